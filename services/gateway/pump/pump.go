package main

// The two ways a call goes: to the engine (one the Python gateway decided already), or to the
// Python gateway, which serves it and may say how to carry the next ones (learned.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

type Pump struct {
	python   string
	grants   *Grants
	shapes   *Shapes
	activity *Activity
	toPython *httputil.ReverseProxy
	clients  *clientConns
	timeout  time.Duration
	control  *http.Client
	retry    *Retry
	secret   string // the gateway's PUMP_SECRET, on every call to it (pumpHeader)
}

// signed: the pump's own calls to the gateway (changes, activity) carry the secret
type signed struct{ pump *Pump }

func (s signed) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(pumpHeader, s.pump.secret)
	return http.DefaultTransport.RoundTrip(r)
}

func NewPump(python string, timeout time.Duration, retry *Retry) *Pump {
	pythonURL, err := url.Parse(python)
	if err != nil {
		panic(err)
	}
	p := &Pump{python: python, grants: NewGrants(100_000), shapes: NewShapes(512), activity: NewActivity(),
		clients: &clientConns{byKey: map[net.Conn]map[string]*engineConn{}}, timeout: timeout, retry: retry}
	p.toPython = &httputil.ReverseProxy{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // bodies pass as they are; no Accept-Encoding is added
		},
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = pythonURL.Scheme, pythonURL.Host
			r.Out.Host = r.In.Host
			for name := range r.Out.Header { // a client's own X-Ess-* never reaches the decider
				if len(name) > 6 && http.CanonicalHeaderKey(name[:6]) == "X-Ess-" {
					r.Out.Header.Del(name)
				}
			}
			host, _, _ := net.SplitHostPort(r.In.RemoteAddr)
			r.Out.Header.Set(clientHeader, host)
			r.Out.Header.Set(pumpHeader, p.secret) // the gateway trusts the address and grants only so
		},
		ModifyResponse: func(response *http.Response) error { p.learn(response); return nil },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			errorAnswer(w, http.StatusServiceUnavailable, "gateway_unavailable",
				fmt.Sprintf("the gateway is restarting (%v); retry shortly", err))
		},
		FlushInterval: -1, // a held or streamed answer goes out as it comes
	}
	p.control = &http.Client{Timeout: 30 * time.Second, Transport: signed{p}}
	return p
}

// buffers: the copy buffers of answers, reused (a fresh 32 KiB per request was a third of the pump's garbage)
var buffers = &bufferPool{pool: sync.Pool{New: func() any { return make([]byte, 32<<10) }}}

type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte  { return b.pool.Get().([]byte) }
func (b *bufferPool) Put(p []byte) { b.pool.Put(p) } //nolint:staticcheck // a slice header: small enough

func (p *Pump) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cluster, path, query, ok := target(r)
	if !ok {
		p.decide(w, r)
		return
	}
	key := keyOf(r, cluster)
	grant := p.grants.Get(key, time.Now())
	if grant == nil {
		lead, wait := p.grants.Renewal(key)
		if lead {
			defer func() { p.grants.Renewed(key, time.Now()) }()
			p.decide(w, r)
			return
		}
		if wait != nil {
			timer := time.NewTimer(renewalWait)
			select {
			case <-wait:
			case <-timer.C: // the lead call is slow (held, or a long search): decided as before
			}
			timer.Stop()
			grant = p.grants.Get(key, time.Now())
		}
	}
	if grant != nil {
		if allowed, read := p.shapes.Allows(grant.Engine, r.Method, path); allowed {
			p.forward(w, r, key, grant, path, query, read)
			return
		}
	}
	p.decide(w, r)
}

// renewalWait: how long a call waits for an expired grant's renewal before the Python gateway
// decides it; a renewal is one key lookup and one engine call, milliseconds.
const renewalWait = 500 * time.Millisecond

// decide: the Python gateway serves it (and may send back a grant and a shape for next time).
func (p *Pump) decide(w http.ResponseWriter, r *http.Request) {
	r, stop := watched(r)
	defer stop()
	ctx := context.WithValue(r.Context(), originalKey{}, r)
	p.toPython.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Pump) forward(w http.ResponseWriter, r *http.Request, key grantKey, grant *Grant, path, query string,
	read bool) {
	engines, _ := r.Context().Value(connKey{}).(map[string]*engineConn)
	if engines == nil {
		p.decide(w, r)
		return
	}
	target := path
	if query != "" {
		target += "?" + query
	}
	var body []byte // the whole body when it is small: served by the Python gateway if the engine is down
	if r.ContentLength > 0 && r.ContentLength <= bufferLimit {
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, r.ContentLength)); err != nil {
			return // the client went away mid-body
		}
	}
	p.activity.Started(grant.Cluster, grant.Tenant)
	response, engine, err := p.exchangeRead(engines, grant, grant.host, r, target, body, read && !opensScroll(query))
	var down notSent
	if errors.As(err, &down) {
		p.activity.Abandoned(grant.Cluster)
		p.grants.Drop(key)
		if body == nil && r.ContentLength > 0 {
			errorAnswer(w, http.StatusServiceUnavailable, "engine_unavailable",
				fmt.Sprintf("the cluster's engine is not reachable (%v); retry shortly", err))
			return
		}
		// nothing sent (the engine stopped, to hibernate or restart): the Python gateway serves it,
		// holding it through a wake, and counts it itself
		retry := r.Clone(r.Context())
		retry.Body = http.NoBody
		if body != nil {
			retry.Body = io.NopCloser(bytes.NewReader(body))
		}
		p.decide(w, retry)
		return
	}
	var sent int64
	defer func() { p.activity.Finished(grant.Cluster, grant.Tenant, max(r.ContentLength, 0), sent) }()
	if err != nil {
		errorAnswer(w, http.StatusBadGateway, "engine_error", fmt.Sprintf("the cluster's engine failed to answer: %v", err))
		return
	}
	var reusable bool
	sent, reusable = answer(w, response)
	if !reusable {
		engine.conn.Close()
		delete(engines, grant.host)
	}
}

// exchangeRead: exchange, and for a read the engine failed for a moment (a copy gone under it),
// again after each of the retry pauses; the last answer is the one passed on.
func (p *Pump) exchangeRead(engines map[string]*engineConn, grant *Grant, host string, r *http.Request,
	target string, body []byte, read bool) (*http.Response, *engineConn, error) {
	var pauses []time.Duration
	if read && (body != nil || r.ContentLength <= 0) { // a streamed body cannot be sent twice
		pauses = p.retry.pauses
	}
	for attempt := 0; ; attempt++ {
		var reader io.Reader = r.Body
		if body != nil {
			reader = bytes.NewReader(body)
		}
		response, engine, err := exchange(engines, grant, host, r, target, reader, p.timeout)
		if err != nil || attempt >= len(pauses) || !worthLooking(response, engine.reader.Peek) {
			return response, engine, err
		}
		whole, err := readWhole(response)
		if err != nil {
			engine.conn.Close()
			delete(engines, host)
			return nil, nil, err
		}
		if p.retry.Transient(whole) == "" {
			return response, engine, nil
		}
		if response.Close {
			engine.conn.Close()
			delete(engines, host)
		}
		p.activity.SentAgain(grant.Cluster, grant.Tenant)
		time.Sleep(pauses[attempt])
	}
}

// FollowChanges: a long poll of the Python gateway's record changes, so a grant ends with them.
func (p *Pump) FollowChanges(stop <-chan struct{}) {
	after := int64(-1)
	client := &http.Client{Timeout: 60 * time.Second, Transport: signed{p}}
	for {
		select {
		case <-stop:
			return
		default:
		}
		response, err := client.Get(fmt.Sprintf("%s/_pump/changes?after=%d&epoch=%s", p.python, after,
			url.QueryEscape(p.grants.Epoch())))
		if err != nil {
			p.grants.Reset("") // the decider is away: nothing it granted is trusted until it is back
			after = -1
			time.Sleep(200 * time.Millisecond)
			continue
		}
		var feed struct {
			Epoch    string   `json:"epoch"`
			Seq      int64    `json:"seq"`
			Clusters []string `json:"clusters"`
			All      bool     `json:"all"`
		}
		err = json.NewDecoder(response.Body).Decode(&feed)
		response.Body.Close()
		if err != nil || response.StatusCode != http.StatusOK {
			p.grants.Reset("")
			after = -1
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if feed.All || feed.Epoch != p.grants.Epoch() {
			p.grants.Reset(feed.Epoch)
		} else if len(feed.Clusters) > 0 {
			p.grants.Changed(feed.Clusters, feed.Seq)
		}
		after = feed.Seq
	}
}
