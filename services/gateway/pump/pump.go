package main

// The two ways a request goes: to the engine (a decided request) or to the Python gateway.

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
	"time"
)

type Pump struct {
	python   string
	grants   *Grants
	shapes   *Shapes
	activity *Activity
	toPython *httputil.ReverseProxy
	toEngine *httputil.ReverseProxy
	control  *http.Client
}

func NewPump(python string, timeout time.Duration) *Pump {
	pythonURL, err := url.Parse(python)
	if err != nil {
		panic(err)
	}
	p := &Pump{python: python, grants: NewGrants(100_000), shapes: NewShapes(512), activity: NewActivity(),
		control: &http.Client{Timeout: 30 * time.Second}}
	transport := func() *http.Transport {
		return &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          0,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true, // bodies pass as they are; no Accept-Encoding is added
			ResponseHeaderTimeout: timeout,
		}
	}
	p.toPython = &httputil.ReverseProxy{
		Transport: transport(),
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
		},
		ModifyResponse: func(response *http.Response) error { p.learn(response); return nil },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			errorAnswer(w, http.StatusServiceUnavailable, "gateway_unavailable",
				fmt.Sprintf("the gateway is restarting (%v); retry shortly", err))
		},
		FlushInterval: -1, // a held or streamed answer goes out as it comes
	}
	p.toEngine = &httputil.ReverseProxy{
		Transport: transport(),
		Rewrite: func(r *httputil.ProxyRequest) {
			forward := r.In.Context().Value(forwardKey{}).(*forwarding)
			r.Out.URL = forward.url
			r.Out.Host = forward.url.Host
			r.Out.Header.Del("Authorization")
			if forward.grant.Authorization != "" { // the engine's own credentials, never the tenant's key
				r.Out.Header.Set("Authorization", forward.grant.Authorization)
			}
		},
		ErrorHandler: p.engineFailed,
	}
	return p
}

type forwardKey struct{}

type forwarding struct {
	grant    *Grant
	url      *url.URL
	body     []byte // the whole body when it was small: sent again to the Python gateway if the engine was down
	original *http.Request
}

func (p *Pump) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cluster, path, query, ok := target(r)
	if ok {
		grant := p.grants.Get(keyOf(r, cluster), time.Now())
		if grant != nil && p.shapes.Allows(grant.Engine, r.Method, path) {
			p.forward(w, r, grant, path, query)
			return
		}
	}
	p.decide(w, r)
}

// decide: the Python gateway serves it (and may send back a grant and a shape for next time).
func (p *Pump) decide(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), originalKey{}, r)
	p.toPython.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Pump) forward(w http.ResponseWriter, r *http.Request, grant *Grant, path, query string) {
	engineURL, err := url.Parse(grant.Endpoint + path)
	if err != nil {
		p.decide(w, r)
		return
	}
	engineURL.RawQuery = query
	forward := &forwarding{grant: grant, url: engineURL, original: r}
	if r.ContentLength > 0 && r.ContentLength <= bufferLimit {
		forward.body, err = io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return // the client went away mid-body
		}
		r.Body = io.NopCloser(bytes.NewReader(forward.body))
	}
	counted := &countingBody{ReadCloser: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = counted
	}
	writer := &countingWriter{ResponseWriter: w}
	p.activity.Started(grant.Cluster, grant.Tenant)
	defer func() { p.activity.Finished(grant.Cluster, grant.Tenant, counted.n, writer.n) }()
	p.toEngine.ServeHTTP(writer, r.WithContext(context.WithValue(r.Context(), forwardKey{}, forward)))
}

// engineFailed: nothing sent (the engine stopped, to hibernate or restart) and the body is at hand:
// the Python gateway serves it, holding it through a wake. Else an engine-shaped 502 or 503.
func (p *Pump) engineFailed(w http.ResponseWriter, r *http.Request, err error) {
	forward := r.Context().Value(forwardKey{}).(*forwarding)
	var opErr *net.OpError
	notSent := errors.As(err, &opErr) && opErr.Op == "dial"
	if notSent {
		p.grants.Drop(forward.grant)
		if forward.body != nil || forward.original.ContentLength == 0 {
			retry := forward.original.Clone(forward.original.Context())
			retry.Body = io.NopCloser(bytes.NewReader(forward.body))
			if forward.body == nil {
				retry.Body = http.NoBody
			}
			if counting, ok := w.(*countingWriter); ok {
				w = counting.ResponseWriter // the Python gateway counts what it serves itself
			}
			p.decide(w, retry)
			return
		}
		errorAnswer(w, http.StatusServiceUnavailable, "engine_unavailable",
			fmt.Sprintf("the cluster's engine is not reachable (%v); retry shortly", err))
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	errorAnswer(w, http.StatusBadGateway, "engine_error", fmt.Sprintf("the cluster's engine failed to answer: %v", err))
}

// FollowChanges: a long poll of the Python gateway's record changes, so a grant ends with them.
func (p *Pump) FollowChanges(stop <-chan struct{}) {
	after := int64(-1)
	client := &http.Client{Timeout: 60 * time.Second}
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

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += int64(n)
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
