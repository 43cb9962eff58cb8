// ess-pump: the gateway's byte pump. It listens on the tenants' port and carries the bytes of
// requests the Python gateway has already decided (a grant per key and cluster, a shape per
// allowed route) straight to the engine; everything else (an unknown key, a held request during a
// wake, a body the policy reads, the operator's audited calls, the console's CORS) goes to the
// Python gateway, which decides as it always has. Started by `python -m services.gateway`.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

const (
	grantHeader  = "X-Ess-Grant"
	shapeHeader  = "X-Ess-Shape"
	clientHeader = "X-Ess-Client" // the client's address, for the Python gateway's key guard
	pumpHeader   = "X-Ess-Pump"   // the secret the gateway gave this pump (services/gateway/pump_link.py)
	bufferLimit  = 1 << 20        // bodies up to this are read whole, so a refused connection can be retried
	soReusePort  = 0xf            // SO_REUSEPORT on Linux (asm-generic/socket.h): the frozen syscall package lacks it
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9200", "the tenants' address")
	python := flag.String("python", "http://127.0.0.1:9202", "the Python gateway, which decides")
	report := flag.Duration("report", time.Second, "how often activity goes to the Python gateway")
	timeout := flag.Duration("upstream-timeout", 120*time.Second, "an engine's answer may take this long")
	drain := flag.Duration("drain", 35*time.Second, "on SIGTERM, requests in flight may finish this long")
	retryErrors := flag.String("retry-errors", "", "engine error types that fail a read for a moment (comma list)")
	retryPauses := flag.String("retry-pauses", "", "pauses before sending such a read again (comma list)")
	flag.Parse()
	dieWithParent()
	debug.SetGCPercent(400) // a few MiB more heap for a quarter of the collections
	retry, err := NewRetry(*retryErrors, *retryPauses)
	if err != nil {
		log.Fatalf("ess-pump: -retry-pauses: %v", err)
	}

	pump := NewPump(*python, *timeout, retry)
	if pump.secret = os.Getenv("PUMP_SECRET"); pump.secret == "" {
		log.Fatalf("ess-pump: no PUMP_SECRET: the gateway starts the pump and gives it one")
	}
	server := pump.Server()
	listener, err := reusePort.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		log.Fatalf("ess-pump: %v", err)
	}
	stop := make(chan struct{})
	reported := make(chan struct{})
	go func() { pump.activity.Report(pump.control, *python+"/_pump/activity", *report, stop); close(reported) }()
	go pump.FollowChanges(stop)
	drained := make(chan struct{})
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
		<-signals
		ctx, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		server.Shutdown(ctx) // no new connections; calls in flight (held ones too) finish
		close(drained)
	}()
	fmt.Fprintf(os.Stderr, "ess-pump listening on %s, deciding with %s\n", *listen, *python)
	if err := server.Serve(listener); err != http.ErrServerClosed {
		log.Fatalf("ess-pump: %v", err)
	}
	<-drained // Serve returns as the shutdown begins, not when it ends
	close(stop)
	<-reported
}

// reusePort: the gateway's workers (one pump each) share the tenants' port; the kernel spreads
// new connections over them, and a draining one stops taking any while the others go on.
var reusePort = net.ListenConfig{Control: func(network, address string, raw syscall.RawConn) error {
	var err error
	if controlErr := raw.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	}); controlErr != nil {
		return controlErr
	}
	return err
}}

// dieWithParent: a SIGKILLed gateway leaves no pump holding its port.
func dieWithParent() {
	parent := os.Getppid()
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0)
	if os.Getppid() != parent {
		os.Exit(1)
	}
}

// target: (cluster, engine path, query) of a request the pump may carry itself, or ok false.
func target(r *http.Request) (cluster, path, query string, ok bool) {
	if r.Header.Get("Origin") != "" || r.Header.Get("Content-Encoding") != "" || r.Header.Get("Upgrade") != "" ||
		r.Header.Get("Authorization") == "" || len(r.TransferEncoding) > 0 {
		return "", "", "", false
	}
	raw, query, _ := strings.Cut(r.RequestURI, "?")
	// "/c" and 12 lower-case hex digits, then the end or the engine's path
	if len(raw) < 14 || raw[:2] != "/c" || (len(raw) > 14 && raw[14] != '/') {
		return "", "", "", false
	}
	for i := 2; i < 14; i++ {
		if c := raw[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", "", "", false
		}
	}
	if path = raw[14:]; path == "" {
		path = "/"
	}
	return raw[1:14], path, query, true
}

func keyOf(r *http.Request, cluster string) grantKey {
	return grantKey{sha256.Sum256([]byte(r.Header.Get("Authorization"))), cluster}
}

// learn from the Python gateway's answer what it decided, and never pass those headers on.
func (p *Pump) learn(response *http.Response) {
	grantText, shapeText := response.Header.Get(grantHeader), response.Header.Get(shapeHeader)
	response.Header.Del(grantHeader)
	response.Header.Del(shapeHeader)
	request := response.Request
	if grantText == "" || request == nil {
		return
	}
	var grant Grant
	if json.Unmarshal([]byte(grantText), &grant) != nil || grant.Endpoint == "" {
		return
	}
	original, _ := request.Context().Value(originalKey{}).(*http.Request)
	if original == nil {
		return
	}
	if cluster, _, _, ok := target(original); !ok || cluster != grant.Cluster {
		return // a grant holds for the cluster the request named, never another
	}
	if p.grants.Put(keyOf(original, grant.Cluster), &grant, time.Now()) && shapeText != "" {
		p.shapes.Learn(grant.Engine, shapeText)
	}
}

type originalKey struct{}

// errorAnswer: an answer of the pump's own, shaped like an engine's error.
func errorAnswer(w http.ResponseWriter, status int, kind, reason string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"type": kind, "reason": reason}, "status": status})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
