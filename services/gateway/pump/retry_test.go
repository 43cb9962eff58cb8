package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	goneNode = `{"error":{"root_cause":[],"type":"search_phase_execution_exception","reason":"",` +
		`"caused_by":{"type":"node_not_connected_exception","reason":"[Node 2] Node not connected"}},"status":500}`
	badQuery = `{"error":{"root_cause":[{"type":"parsing_exception"}],"type":"parsing_exception"},"status":400}`
	broken   = `{"error":{"type":"illegal_state_exception","reason":"a bug"},"status":500}`
	partial  = `{"took":3,"timed_out":false,"_shards":{"total":2,"successful":1,"skipped":0,"failed":1,` +
		`"failures":[{"shard":0,"reason":{"type":"search_context_missing_exception"}}]},"hits":{"hits":[]}}`
	whole = `{"took":3,"timed_out":false,"_shards":{"total":2,"successful":2,"skipped":0,"failed":0},"hits":{"hits":[]}}`
)

// an engine that fails the first `failures` calls with `status` and `failure`, then answers whole
func flakyEngine(failures int64, status int, failure string) (*httptest.Server, *atomic.Int64) {
	calls := &atomic.Int64{}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) != `{"query":{"match_all":{}}}` && r.Method == "POST" {
			w.WriteHeader(http.StatusTeapot) // the body sent again must be the body sent first
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) <= failures {
			w.WriteHeader(status)
			fmt.Fprint(w, failure)
			return
		}
		fmt.Fprint(w, whole)
	})), calls
}

func TestAReadTheEngineFailedForAMomentIsSentAgainAndNothingElseIs(t *testing.T) {
	retry, err := NewRetry("node_not_connected_exception,search_context_missing_exception", "1ms,1ms,1ms")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, shape, method string
		failures            int64
		status              int
		failure             string
		wantStatus          int
		wantCalls           int64
	}{
		{"a node gone mid-search", "POST /*/_search read", "POST", 1, 500, goneNode, 200, 2},
		{"shards failed in a 200", "POST /*/_search read", "POST", 2, 200, partial, 200, 3},
		{"still failing after every pause", "POST /*/_search read", "POST", 9, 500, goneNode, 500, 4},
		{"the tenant's own mistake", "POST /*/_search read", "POST", 1, 400, badQuery, 400, 1},
		{"an engine fault of another kind", "POST /*/_search read", "POST", 1, 500, broken, 500, 1},
		{"not a read", "POST /*/_search", "POST", 1, 500, goneNode, 500, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			engine, calls := flakyEngine(c.failures, c.status, c.failure)
			defer engine.Close()
			python := httptest.NewServer(&decider{engine: engine.URL, epoch: "e1", shape: c.shape})
			defer python.Close()
			pump := NewPump(python.URL, 5*time.Second, retry)
			pump.grants.Reset("e1")
			front := startFront(t, pump)
			send := func() (int, string) {
				request, _ := http.NewRequest(c.method, front+"/c0123456789ab/bench/_search",
					strings.NewReader(`{"query":{"match_all":{}}}`))
				request.Header.Set("Authorization", "ApiKey k1")
				response, err := http.DefaultClient.Do(request)
				if err != nil {
					t.Fatal(err)
				}
				defer response.Body.Close()
				body, _ := io.ReadAll(response.Body)
				return response.StatusCode, string(body)
			}
			if _, body := send(); body != "decided" { // the first call teaches the pump the grant and shape
				t.Fatalf("first call: %q", body)
			}
			status, body := send()
			if status != c.wantStatus || calls.Load() != c.wantCalls {
				t.Errorf("got %d after %d engine calls (want %d after %d): %s", status, calls.Load(), c.wantStatus,
					c.wantCalls, body)
			}
			if status == 200 && body != whole {
				t.Errorf("answered %s", body)
			}
		})
	}
}

func TestThePumpAndTheGatewayAgreeOnWhichAnswersAreSentAgain(t *testing.T) {
	var vectors struct {
		Answers []struct {
			Why       string          `json:"why"`
			Status    int             `json:"status"`
			Body      json.RawMessage `json:"body"`
			Transient string          `json:"transient"`
		} `json:"answers"`
	}
	raw, err := os.ReadFile("testdata/engine_answers.json") // services/gateway/retries.py's test reads it too
	if err != nil || json.Unmarshal(raw, &vectors) != nil {
		t.Fatal("testdata/engine_answers.json", err)
	}
	kinds := []string{"node_not_connected_exception", "no_shard_available_action_exception",
		"search_context_missing_exception", "shard_not_found_exception"}
	retry, _ := NewRetry(strings.Join(kinds, ","), "1ms")
	for _, v := range vectors.Answers {
		var body []byte
		var text string
		if json.Unmarshal(v.Body, &text) == nil {
			body = []byte(text) // not JSON: sent as the string it is
		} else {
			var compact bytes.Buffer
			json.Compact(&compact, v.Body)
			body = compact.Bytes()
		}
		response := &http.Response{StatusCode: v.Status, Header: http.Header{}, ContentLength: int64(len(body))}
		got := ""
		if worthLooking(response, func(n int) ([]byte, error) { return body[:n], nil }) {
			got = retry.Transient(body)
		}
		if got != v.Transient {
			t.Errorf("%s: got %q, want %q", v.Why, got, v.Transient)
		}
	}
}

func TestASearchThatOpensAScrollIsNotSentAgainAsThePythonGatewayDecides(t *testing.T) {
	var vectors struct {
		Queries []struct {
			Query string `json:"query"`
			Opens bool   `json:"opens"`
		} `json:"queries"`
	}
	raw, err := os.ReadFile("testdata/scroll_queries.json")
	if err != nil || json.Unmarshal(raw, &vectors) != nil || len(vectors.Queries) == 0 {
		t.Fatalf("testdata/scroll_queries.json: %v", err)
	}
	for _, v := range vectors.Queries {
		if got := opensScroll(v.Query); got != v.Opens {
			t.Errorf("%q: opens a scroll %v, want %v", v.Query, got, v.Opens)
		}
	}
}

func TestReadsSentAgainAreReportedOnceAndPutBackWhenTheReportIsLost(t *testing.T) {
	a := NewActivity()
	a.SentAgain("c1", "t1")
	a.SentAgain("c1", "t1")
	taken := a.Take()
	if len(taken) != 1 || taken[0].SentAgain != 2 {
		t.Fatalf("took %+v, want one tally with 2 sent again", taken)
	}
	if again := a.Take(); len(again) != 0 {
		t.Fatalf("counted twice: %+v", again)
	}
	a.PutBack(taken)
	if back := a.Take(); len(back) != 1 || back[0].SentAgain != 2 {
		t.Fatalf("a lost report's counts were not put back: %+v", back)
	}
}

func TestTheHandScansMatchThePatternsTheGatewayUses(t *testing.T) {
	// the Python gateway's retries.PARTIAL and retries.SCROLL, the oracle here
	pattern := regexp.MustCompile(`"_shards"\s*:\s*\{[^}]*"failed"\s*:\s*[1-9]`)
	scroll := regexp.MustCompile(`(?:^|&)scroll=`)
	seeds := []string{partial, whole, goneNode, `{"_shards" :` + "\n" + `{"failed":` + "\t" + `2}}`,
		`{"_shards":{"total":1},"failed":1}`, `"_shards":"_shards":{"failed":3`, `scroll=1m&q=x`, `q=x&scroll=1m`,
		`q=xscroll=1`}
	tokens := []string{`"_shards"`, `"failed"`, `:`, ` `, "\n", `{`, `}`, `,`, `0`, `1`, `9`, `"`, `&`, `scroll=`}
	random := rand.New(rand.NewSource(7))
	for i := 0; i < 100_000; i++ {
		s := seeds[random.Intn(len(seeds))]
		for edits := random.Intn(4); edits > 0; edits-- { // insert a token, or cut a piece out
			at := random.Intn(len(s) + 1)
			if random.Intn(2) == 0 {
				s = s[:at] + tokens[random.Intn(len(tokens))] + s[at:]
			} else {
				s = s[:at] + s[min(len(s), at+random.Intn(6)):]
			}
		}
		if got, want := partialHead([]byte(s)), pattern.MatchString(s); got != want {
			t.Fatalf("%q: partial %v, the pattern says %v", s, got, want)
		}
		if got, want := opensScroll(s), scroll.MatchString(s); got != want {
			t.Fatalf("%q: scroll %v, the pattern says %v", s, got, want)
		}
	}
}
