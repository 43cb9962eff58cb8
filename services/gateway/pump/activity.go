package main

// What the pump forwarded, per cluster, reported to the Python gateway, which meters it with
// its own counts (one activity event per cluster per flush) and sees a busy cluster as busy.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

type Tally struct {
	Cluster   string `json:"cluster"`
	Tenant    string `json:"tenant"`
	Requests  int64  `json:"requests"`
	BytesIn   int64  `json:"bytes_in"`
	BytesOut  int64  `json:"bytes_out"`
	InFlight  int64  `json:"in_flight"`
	SentAgain int64  `json:"sent_again"` // reads the engine failed for a moment, sent again
}

type Activity struct {
	mu      sync.Mutex
	pending map[string]*Tally
}

func NewActivity() *Activity { return &Activity{pending: map[string]*Tally{}} }

func (a *Activity) tally(cluster, tenant string) *Tally {
	t := a.pending[cluster]
	if t == nil {
		t = &Tally{Cluster: cluster, Tenant: tenant}
		a.pending[cluster] = t
	}
	return t
}

func (a *Activity) Started(cluster, tenant string) {
	a.mu.Lock()
	a.tally(cluster, tenant).InFlight++
	a.mu.Unlock()
}

func (a *Activity) Finished(cluster, tenant string, bytesIn, bytesOut int64) {
	a.mu.Lock()
	t := a.tally(cluster, tenant)
	t.InFlight--
	t.Requests++
	t.BytesIn += bytesIn
	t.BytesOut += bytesOut
	a.mu.Unlock()
}

// SentAgain: a read of the cluster's was sent to the engine again (retry.go).
func (a *Activity) SentAgain(cluster, tenant string) {
	a.mu.Lock()
	a.tally(cluster, tenant).SentAgain++
	a.mu.Unlock()
}

// Abandoned: a call that was not carried after all (the Python gateway serves and counts it).
func (a *Activity) Abandoned(cluster string) {
	a.mu.Lock()
	a.pending[cluster].InFlight--
	a.mu.Unlock()
}

// Take: the counts since the last report; clusters with requests still running stay listed.
func (a *Activity) Take() []Tally {
	a.mu.Lock()
	defer a.mu.Unlock()
	taken := make([]Tally, 0, len(a.pending))
	for cluster, t := range a.pending {
		if t.Requests == 0 && t.InFlight == 0 && t.SentAgain == 0 {
			delete(a.pending, cluster)
			continue
		}
		taken = append(taken, *t)
		t.Requests, t.BytesIn, t.BytesOut, t.SentAgain = 0, 0, 0, 0
	}
	return taken
}

// PutBack: a report that did not arrive is counted again in the next.
func (a *Activity) PutBack(reports []Tally) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range reports {
		t := a.tally(r.Cluster, r.Tenant)
		t.Requests += r.Requests
		t.BytesIn += r.BytesIn
		t.BytesOut += r.BytesOut
		t.SentAgain += r.SentAgain
	}
}

// Report every `every` to the Python gateway's /_pump/activity until stop closes; once more at the end.
func (a *Activity) Report(client *http.Client, url string, every time.Duration, stop <-chan struct{}) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	send := func() {
		reports := a.Take()
		if len(reports) == 0 {
			return
		}
		body, _ := json.Marshal(reports)
		response, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			response.Body.Close()
		}
		if err != nil || response.StatusCode != http.StatusNoContent {
			a.PutBack(reports)
		}
	}
	for {
		select {
		case <-ticker.C:
			send()
		case <-stop:
			send()
			return
		}
	}
}
