package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestPlainIsTheClassOfThePolicy(t *testing.T) {
	// the same list the Python policy's test reads (tests/unit/test_pump_shapes.py)
	raw, err := os.ReadFile("testdata/plain_segments.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors struct {
		Plain    []string `json:"plain"`
		NotPlain []string `json:"not_plain"`
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	for _, s := range vectors.Plain {
		if !Plain(s) {
			t.Errorf("%q should be plain", s)
		}
	}
	for _, s := range vectors.NotPlain {
		if Plain(s) {
			t.Errorf("%q should not be plain", s)
		}
	}
}

func TestShapesCoverOnlyPlainSegmentsWhereTheyHoldAStar(t *testing.T) {
	shapes := NewShapes(8)
	shapes.Learn("opensearch", "GET /*/_doc/*")
	cases := map[string]bool{
		"/bench/_doc/d1": true, "/other/_doc/x-y.z": true,
		"/_snapshot/_doc/x": false, "/bench/%5Fdoc/x": false, "/bench/_doc/..": false, "/bench/_doc/": false,
		"/bench//_doc/x": false, "/bench/_doc/x/y": false, "/bench/_docs/x": false, "/bench/_doc/a%2fb": false,
	}
	for path, want := range cases {
		if got, _ := shapes.Allows("opensearch", "GET", path); got != want {
			t.Errorf("GET %s: got %v, want %v", path, got, want)
		}
	}
	if ok, _ := shapes.Allows("elasticsearch", "GET", "/bench/_doc/d1"); ok {
		t.Error("a shape holds for its engine only")
	}
	if ok, _ := shapes.Allows("opensearch", "PUT", "/bench/_doc/d1"); ok {
		t.Error("a shape holds for its method only")
	}
	shapes.Learn("opensearch", "GET / read")
	root, read := shapes.Allows("opensearch", "GET", "/")
	if twice, _ := shapes.Allows("opensearch", "GET", "//"); !root || !read || twice {
		t.Error("the root is its own shape, and a read")
	}
	if shapes.Learn("opensearch", "GET /x sometimes") {
		t.Error("a shape with an unknown mark was learned")
	}
}

func TestAGrantEndsWithItsTTLItsClusterChangeOrANewEpoch(t *testing.T) {
	grants := NewGrants(10)
	grants.Reset("e1")
	now := time.Now()
	key := grantKey{cluster: "c1"}
	grant := func(epoch string, seq int64) *Grant {
		return &Grant{Cluster: "c1", TTL: 5, Epoch: epoch, Seq: seq, Endpoint: "http://127.0.0.1:19201"}
	}
	if grants.Put(key, &Grant{Cluster: "c1", TTL: 5, Epoch: "e1", Seq: 3, Endpoint: "no host"}, now) {
		t.Error("a grant naming no engine was kept")
	}
	if !grants.Put(key, grant("e1", 3), now) || grants.Get(key, now) == nil {
		t.Fatal("a fresh grant is kept")
	}
	if grants.Get(key, now.Add(6*time.Second)) != nil {
		t.Error("kept past its TTL")
	}
	grants.Changed([]string{"c1"}, 4)
	if grants.Get(key, now) != nil {
		t.Error("kept after its cluster changed")
	}
	if grants.Put(key, grant("e1", 3), now) {
		t.Error("a grant decided before the change was kept")
	}
	if grants.Put(key, grant("e0", 9), now) {
		t.Error("a grant of another epoch was kept")
	}
	if !grants.Put(key, grant("e1", 4), now) {
		t.Error("a grant decided after the change is kept")
	}
	grants.Reset("e2")
	if grants.Get(key, now) != nil {
		t.Error("kept across epochs")
	}
}

// a decider that grants every request for cluster c0123456789ab and counts what reached it
type decider struct {
	engine  string
	epoch   string
	shape   string        // "": GET /*/_doc/*
	ttl     float64       // 0: 30 s
	delay   time.Duration // a key lookup's time
	refuse  atomic.Bool   // the key is revoked: 401, no grant
	calls   atomic.Int64
	lastHdr atomic.Value
}

func (d *decider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_pump/changes":
		json.NewEncoder(w).Encode(map[string]any{"epoch": d.epoch, "seq": 0, "clusters": []string{}, "all": false})
		return
	case "/_pump/activity":
		w.WriteHeader(http.StatusNoContent)
		return
	}
	d.calls.Add(1)
	d.lastHdr.Store(r.Header.Clone())
	time.Sleep(d.delay)
	if d.refuse.Load() {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "refused")
		return
	}
	ttl := d.ttl
	if ttl == 0 {
		ttl = 30
	}
	grant, _ := json.Marshal(Grant{Cluster: "c0123456789ab", Tenant: "t", Engine: "opensearch", Endpoint: d.engine,
		Authorization: "Basic ZW5naW5lOnB3", TTL: ttl, Epoch: d.epoch})
	w.Header().Set(grantHeader, string(grant))
	shape := d.shape
	if shape == "" {
		shape = "GET /*/_doc/*"
	}
	w.Header().Set(shapeHeader, shape)
	fmt.Fprint(w, "decided")
}

func TestDecidedRequestsGoToTheEngineWithItsCredentialsAndTheRestToTheDecider(t *testing.T) {
	var engineAuth atomic.Value
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		engineAuth.Store(r.Header.Get("Authorization") + " " + r.RequestURI)
		fmt.Fprint(w, "engine")
	}))
	defer engine.Close()
	d := &decider{engine: engine.URL, epoch: "e1"}
	python := httptest.NewServer(d)
	defer python.Close()
	pump := NewPump(python.URL, 5*time.Second, &Retry{})
	pump.grants.Reset("e1")
	front := startFront(t, pump)

	get := func(path string, headers map[string]string) (string, http.Header) {
		request, _ := http.NewRequest("GET", front+path, nil)
		request.Header.Set("Authorization", "ApiKey k1")
		for name, value := range headers {
			request.Header.Set(name, value)
		}
		response, err := http.DefaultClient.Do(request)
		if err != nil {
			t.Fatal(err)
		}
		defer response.Body.Close()
		body, _ := io.ReadAll(response.Body)
		return string(body), response.Header
	}
	body, headers := get("/c0123456789ab/bench/_doc/d1", map[string]string{"X-Ess-Client": "6.6.6.6"})
	if body != "decided" || headers.Get(grantHeader) != "" || headers.Get(shapeHeader) != "" {
		t.Fatalf("first call: %q %v (the grant must not reach the client)", body, headers)
	}
	if got := d.lastHdr.Load().(http.Header).Get("X-Ess-Client"); got != "127.0.0.1" {
		t.Errorf("the decider was told the client is %q", got)
	}
	if body, _ := get("/c0123456789ab/bench/_doc/d2?pretty", nil); body != "engine" {
		t.Fatalf("a decided shape went to %q", body)
	}
	if got := engineAuth.Load().(string); got != "Basic ZW5naW5lOnB3 /bench/_doc/d2?pretty" {
		t.Errorf("the engine saw %q", got)
	}
	for _, path := range []string{"/c0123456789ab/_snapshot/_doc/x", "/c0123456789ab/bench/_doc/%2e%2e",
		"/c0123456789ab/bench/_search", "/cffffffffffff/bench/_doc/d1"} {
		if body, _ := get(path, nil); body != "decided" {
			t.Errorf("%s went to %q, not to the decider", path, body)
		}
	}
	request, _ := http.NewRequest("GET", front+"/c0123456789ab/bench/_doc/d3", nil)
	request.Header.Set("Authorization", "ApiKey another")
	response, _ := http.DefaultClient.Do(request)
	body2, _ := io.ReadAll(response.Body)
	response.Body.Close()
	if string(body2) != "decided" {
		t.Error("another key used the first key's grant")
	}

	engine.Close() // the engine stops (to hibernate): the call is served by the decider, which holds it
	before := d.calls.Load()
	if body, _ := get("/c0123456789ab/bench/_doc/d4", nil); body != "decided" || d.calls.Load() != before+1 {
		t.Errorf("with the engine down the call got %q", body)
	}
}

func TestActivityIsCountedOnceAndPutBackWhenNotReported(t *testing.T) {
	a := NewActivity()
	a.Started("c1", "t")
	a.Finished("c1", "t", 10, 20)
	a.Started("c1", "t")
	taken := a.Take()
	if len(taken) != 1 || taken[0].Requests != 1 || taken[0].BytesOut != 20 || taken[0].InFlight != 1 {
		t.Fatalf("took %+v", taken)
	}
	a.PutBack(taken)
	again := a.Take()
	if again[0].Requests != 1 || again[0].BytesIn != 10 {
		t.Fatalf("put back %+v", again)
	}
	a.Finished("c1", "t", 0, 0)
	if last := a.Take(); last[0].Requests != 1 || last[0].InFlight != 0 {
		t.Fatalf("then %+v", last)
	}
	if len(a.Take()) != 0 {
		t.Error("an idle cluster is not reported again")
	}
}

// startFront: the pump's own server on a free port, shut down with the test.
func startFront(t *testing.T, pump *Pump) string {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := pump.Server()
	go server.Serve(listener)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		server.Shutdown(ctx)
	})
	return "http://" + listener.Addr().String()
}
