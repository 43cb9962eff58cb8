package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many calls of one key at the moment its grant expires: one goes to the Python gateway, which
// grants it again, and the others wait for that and go to the engine; a revoked key is refused
// to every one of them and none reaches the engine.
func TestAnExpiredGrantIsRenewedByOneCallWhileTheOthersWait(t *testing.T) {
	var engineCalls atomic.Int64
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		engineCalls.Add(1)
		fmt.Fprint(w, "engine")
	}))
	defer engine.Close()
	d := &decider{engine: engine.URL, epoch: "e1", ttl: 1, delay: 100 * time.Millisecond}
	python := httptest.NewServer(d)
	defer python.Close()
	pump := NewPump(python.URL, 5*time.Second, &Retry{})
	pump.grants.Reset("e1")
	front := startFront(t, pump)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	get := func(path string) (int, string) {
		request, _ := http.NewRequest("GET", front+path, nil)
		request.Header.Set("Authorization", "ApiKey k1")
		response, err := client.Do(request)
		if err != nil {
			return 0, err.Error()
		}
		defer response.Body.Close()
		body, _ := io.ReadAll(response.Body)
		return response.StatusCode, string(body)
	}
	together := func(n int) map[string]int {
		var mu sync.Mutex
		bodies := map[string]int{}
		var all sync.WaitGroup
		for i := range n {
			all.Add(1)
			go func() {
				defer all.Done()
				status, body := get(fmt.Sprintf("/c0123456789ab/bench/_doc/d%d", i))
				mu.Lock()
				bodies[fmt.Sprintf("%d %s", status, body)]++
				mu.Unlock()
			}()
		}
		all.Wait()
		return bodies
	}
	if _, body := get("/c0123456789ab/bench/_doc/first"); body != "decided" {
		t.Fatalf("the first call went to %q", body)
	}
	time.Sleep(1100 * time.Millisecond) // the grant expires
	before := d.calls.Load()
	if got := together(20); got["200 decided"] != 1 || got["200 engine"] != 19 {
		t.Errorf("after the grant expired: %v (one decided, 19 carried)", got)
	}
	if calls := d.calls.Load() - before; calls != 1 {
		t.Errorf("the Python gateway got %d calls for one renewal", calls)
	}

	d.refuse.Store(true) // revoked: the next lookup refuses the key
	time.Sleep(1100 * time.Millisecond)
	carried := engineCalls.Load()
	if got := together(20); got["401 refused"] != 20 {
		t.Errorf("a revoked key's calls: %v", got)
	}
	if engineCalls.Load() != carried {
		t.Error("a revoked key's call reached the engine")
	}
}
