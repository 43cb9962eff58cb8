package main

// What the pump may forward on its own. It never decides: each grant and each shape is a
// decision the Python gateway made and sent back on a response it served (X-Ess-Grant,
// X-Ess-Shape). The pump only recognises a request the same decision covers; anything else,
// or anything it is unsure of, goes to the Python gateway.

import (
	"net/url"
	"strings"
	"sync"
	"time"
)

// Grant: a key (its Authorization header, hashed) may reach one cluster, forwarded as below.
type Grant struct {
	Cluster       string  `json:"cluster"`
	Tenant        string  `json:"tenant"`
	Engine        string  `json:"engine"`
	Endpoint      string  `json:"endpoint"`
	Authorization string  `json:"authorization"`
	TTL           float64 `json:"ttl_s"`
	Epoch         string  `json:"epoch"`
	Seq           int64   `json:"seq"`
	until         time.Time
	host          string // the endpoint's host:port, parsed once
}

type grantKey struct {
	auth    [32]byte
	cluster string
}

// Grants: what the Python gateway granted, until its TTL or a change of the cluster's record.
type Grants struct {
	mu        sync.RWMutex
	byKey     map[grantKey]*Grant
	epoch     string           // the Python gateway's start; another one: nothing it said before holds
	changedAt map[string]int64 // cluster -> sequence number of its last record change seen
	limit     int
	renewing  map[grantKey]chan struct{} // an expired grant's one call at the Python gateway; closed when it ends
}

func NewGrants(limit int) *Grants {
	return &Grants{byKey: map[grantKey]*Grant{}, changedAt: map[string]int64{}, limit: limit,
		renewing: map[grantKey]chan struct{}{}}
}

func (g *Grants) Get(key grantKey, now time.Time) *Grant {
	g.mu.RLock()
	grant := g.byKey[key]
	g.mu.RUnlock()
	if grant == nil || now.After(grant.until) {
		return nil
	}
	return grant
}

// Renewal: what a call does whose key had a grant that has expired. One call (lead) goes to the
// Python gateway, which looks the key up again and answers with a new grant; the others wait for
// it (wait) rather than all going there at once: at 200 connections that herd, every key-cache
// period, put a hundred calls per second through Python and made the pump's p99 five times
// HAProxy's. Neither: no grant expired (never granted, or dropped): the Python gateway decides.
func (g *Grants) Renewal(key grantKey) (lead bool, wait <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byKey[key] == nil {
		return false, nil
	}
	if done, ok := g.renewing[key]; ok {
		return false, done
	}
	g.renewing[key] = make(chan struct{})
	return true, nil
}

// Renewed: the lead call has its answer. Without a new grant (a revoked key, a changed record)
// the expired one goes, so the next calls are decided as for a key never granted.
func (g *Grants) Renewed(key grantKey, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if grant := g.byKey[key]; grant != nil && now.After(grant.until) {
		delete(g.byKey, key)
	}
	g.endRenewal(key)
}

func (g *Grants) endRenewal(key grantKey) {
	if done, ok := g.renewing[key]; ok {
		close(done)
		delete(g.renewing, key)
	}
}

// Put keeps a grant unless its cluster's record changed after the grant was decided.
func (g *Grants) Put(key grantKey, grant *Grant, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if grant.Epoch != g.epoch || g.changedAt[grant.Cluster] > grant.Seq || grant.TTL <= 0 {
		return false
	}
	endpoint, err := url.Parse(grant.Endpoint)
	if err != nil || endpoint.Host == "" {
		return false
	}
	grant.host = endpoint.Host
	if len(g.byKey) >= g.limit {
		g.byKey = map[grantKey]*Grant{}
	}
	grant.until = now.Add(time.Duration(grant.TTL * float64(time.Second)))
	g.byKey[key] = grant
	g.endRenewal(key) // the calls waiting for it go on as soon as the answer's head is here
	return true
}

// Changed: these clusters' records changed (at sequence seq); their grants go.
func (g *Grants) Changed(clusters []string, seq int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	drop := map[string]bool{}
	for _, cluster := range clusters {
		g.changedAt[cluster] = seq
		drop[cluster] = true
	}
	for key, grant := range g.byKey {
		if drop[grant.Cluster] {
			delete(g.byKey, key)
		}
	}
}

// Reset: a new Python gateway (or a feed it cannot continue): forget everything.
func (g *Grants) Reset(epoch string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.epoch = epoch
	g.byKey = map[grantKey]*Grant{}
	g.changedAt = map[string]int64{}
}

func (g *Grants) Epoch() string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.epoch
}

// A shape: "<engine> <method> /seg/*/seg", where `*` stands for any plain segment. The Python
// gateway sends one only for a verdict that holds for every path of that shape (allowed, no body
// to read, forwarded unchanged).
type shape struct {
	segments []string
	read     bool // changes nothing: may be sent again (the header's ` read`)
}

type shapeKey struct {
	engine, method string
	count          int
}

type Shapes struct {
	mu    sync.RWMutex
	known map[shapeKey][]shape
	limit int // shapes per key; beyond it the oldest half is forgotten
}

func NewShapes(limit int) *Shapes { return &Shapes{known: map[shapeKey][]shape{}, limit: limit} }

// splitPath: the segments of an engine path ("/" has none).
func splitPath(path string) []string {
	if path == "/" {
		return nil
	}
	return strings.Split(path[1:], "/")
}

// Plain: a segment any shape's `*` may stand for. The same class as api_policy.PLAIN.
func Plain(segment string) bool {
	if segment == "" || !alnum(segment[0]) {
		return false
	}
	for i := 1; i < len(segment); i++ {
		c := segment[i]
		if !alnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// Learn a shape from the header `<method> <path pattern>[ read]`.
func (s *Shapes) Learn(engine, header string) bool {
	method, pattern, ok := strings.Cut(header, " ")
	pattern, mark, marked := strings.Cut(pattern, " ")
	if !ok || !strings.HasPrefix(pattern, "/") || (marked && mark != "read") {
		return false
	}
	learned := shape{segments: splitPath(pattern), read: marked}
	key := shapeKey{engine, method, len(learned.segments)}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, known := range s.known[key] {
		if equal(known.segments, learned.segments) && known.read == learned.read {
			return true
		}
	}
	list := s.known[key]
	if len(list) >= s.limit {
		list = append([]shape{}, list[len(list)/2:]...)
	}
	s.known[key] = append(list, learned)
	return true
}

// Allows: a learned shape covers this request (the path holds no query), and whether it reads.
func (s *Shapes) Allows(engine, method, path string) (allowed, read bool) {
	segments := splitPath(path)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, known := range s.known[shapeKey{engine, method, len(segments)}] {
		if covers(known.segments, segments) {
			return true, known.read
		}
	}
	return false, false
}

func covers(pattern, segments []string) bool {
	for i, token := range pattern {
		if token == "*" {
			if !Plain(segments[i]) {
				return false
			}
		} else if token != segments[i] {
			return false
		}
	}
	return true
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Drop: a grant whose engine did not answer is not used again.
func (g *Grants) Drop(key grantKey) {
	g.mu.Lock()
	delete(g.byKey, key)
	g.mu.Unlock()
}
