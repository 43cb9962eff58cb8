package main

// The pump's own server loop against raw bytes on one connection: what net/http's server did for
// it (keep-alive, chunked bodies, 100-continue, HTTP/1.0, refusals, streaming, a drain) it must do.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echoDecider: the Python gateway's stand-in; it answers with the method, path and body it got,
// /slow streams two parts with a pause between them (a held call's answer), and /held waits
// up to 1 s and says on `left` whether its caller went away first.
var left = make(chan bool, 1)

func echoDecider(t *testing.T) string {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			io.ReadAll(r.Body)
			select {
			case <-r.Context().Done():
				left <- true
			case <-time.After(time.Second):
				left <- false
			}
			return
		}
		if r.URL.Path == "/_pump/changes" || r.URL.Path == "/_pump/activity" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.URL.Path == "/slow" {
			fmt.Fprint(w, "first;")
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			fmt.Fprint(w, "second")
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	t.Cleanup(server.Close)
	return server.URL
}

func dialFront(t *testing.T) (net.Conn, *bufio.Reader) {
	front := startFront(t, NewPump(echoDecider(t), 5*time.Second, &Retry{}))
	conn, err := net.Dial("tcp", strings.TrimPrefix(front, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

func readAnswer(t *testing.T, reader *bufio.Reader, method string) (*http.Response, string) {
	response, err := http.ReadResponse(reader, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(response.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response, string(body)
}

func TestOneConnectionCarriesCallsOneAfterAnotherWithTheirBodies(t *testing.T) {
	conn, reader := dialFront(t)
	fmt.Fprint(conn, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"+
		"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"POST /a hello", "POST /b abcde", "GET /c "} {
		if response, body := readAnswer(t, reader, "GET"); response.StatusCode != 200 || body != want {
			t.Errorf("got %d %q, want %q", response.StatusCode, body, want)
		}
	}
	fmt.Fprint(conn, "HEAD /d HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n")
	if response, body := readAnswer(t, reader, "HEAD"); response.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", response.StatusCode, body)
	}
	if _, body := readAnswer(t, reader, "GET"); body != "GET /e " {
		t.Errorf("after a HEAD: %q", body)
	}
}

func TestABodyBehindExpectContinueIsAskedForOnce(t *testing.T) {
	conn, reader := dialFront(t)
	fmt.Fprint(conn, "PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
	line, _ := reader.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("before the body: %q", line)
	}
	reader.ReadString('\n')
	fmt.Fprint(conn, "body")
	if _, body := readAnswer(t, reader, "PUT"); body != "PUT /a body" {
		t.Errorf("got %q", body)
	}
	fmt.Fprint(conn, "GET /b HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n")
	if response, _ := readAnswer(t, reader, "GET"); response.StatusCode != http.StatusExpectationFailed {
		t.Errorf("an unknown expectation got %d", response.StatusCode)
	}
}

func TestAnHTTP10ClientKeepsItsConnectionOnlyWhenItAsks(t *testing.T) {
	conn, reader := dialFront(t)
	fmt.Fprint(conn, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if response, body := readAnswer(t, reader, "GET"); body != "GET /a " || response.Close {
		t.Errorf("keep-alive asked: %q, close %v", body, response.Close)
	}
	fmt.Fprint(conn, "GET /b HTTP/1.0\r\n\r\n")
	if response, body := readAnswer(t, reader, "GET"); body != "GET /b " || !response.Close {
		t.Errorf("no keep-alive: %q, close %v", body, response.Close)
	}
	if _, err := reader.ReadByte(); err != io.EOF {
		t.Errorf("the connection stayed open: %v", err)
	}
}

func TestMalformedRequestsAreRefusedAndTheConnectionEnds(t *testing.T) {
	for name, c := range map[string]struct {
		request string
		status  int
	}{
		"no Host in 1.1":          {"GET /a HTTP/1.1\r\n\r\n", 400},
		"two Hosts":               {"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400},
		"a bad Host":              {"GET /a HTTP/1.1\r\nHost: x y\r\n\r\n", 400},
		"a control byte":          {"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400},
		"two lengths":             {"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		"a header past the limit": {"GET /a HTTP/1.1\r\nHost: x\r\nX-A: " + strings.Repeat("a", maxHeaderBytes+8192) + "\r\n\r\n", 431},
		"not HTTP":                {"HELLO\r\n\r\n", 400},
	} {
		t.Run(name, func(t *testing.T) {
			conn, reader := dialFront(t)
			go fmt.Fprint(conn, c.request) // a refused header is not read to its end
			response, _ := readAnswer(t, reader, "GET")
			if response.StatusCode != c.status || !response.Close {
				t.Errorf("got %d (close %v), want %d", response.StatusCode, response.Close, c.status)
			}
		})
	}
}

func TestAStreamedAnswerReachesTheClientAsItComes(t *testing.T) {
	conn, reader := dialFront(t)
	fmt.Fprint(conn, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	response, err := http.ReadResponse(reader, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first;"))
	started := time.Now()
	if _, err := io.ReadFull(response.Body, first); err != nil || string(first) != "first;" {
		t.Fatalf("first part: %q %v", first, err)
	}
	if waited := time.Since(started); waited > 200*time.Millisecond {
		t.Errorf("the first part came with the rest (%v)", waited)
	}
	rest, _ := io.ReadAll(response.Body)
	if string(rest) != "second" {
		t.Errorf("rest: %q", rest)
	}
}

func TestAShutdownFinishesTheCallInFlightAndClosesIdleConnections(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := NewPump(echoDecider(t), 5*time.Second, &Retry{}).Server()
	served := make(chan error, 1)
	go func() { served <- server.Serve(listener) }()
	idle, _ := net.Dial("tcp", listener.Addr().String())
	busy, _ := net.Dial("tcp", listener.Addr().String())
	defer idle.Close()
	defer busy.Close()
	fmt.Fprint(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // the slow call is in flight
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go server.Shutdown(ctx)
	if _, body := readAnswer(t, bufio.NewReader(busy), "GET"); body != "first;second" {
		t.Errorf("the call in flight got %q", body)
	}
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the idle connection: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve returned %v", err)
	}
}

func TestAClientThatLeavesEndsItsHeldCallAtTheGateway(t *testing.T) {
	for _, request := range []string{"GET /held HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"} {
		conn, _ := dialFront(t)
		fmt.Fprint(conn, request)
		time.Sleep(200 * time.Millisecond) // the call is held
		conn.Close()
		if !<-left {
			t.Errorf("%q: the gateway kept holding a call whose client left", request)
		}
	}
	conn, reader := dialFront(t) // a client that stays is not taken for one that left
	fmt.Fprint(conn, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	if response, _ := readAnswer(t, reader, "GET"); response.StatusCode != 200 || <-left {
		t.Errorf("a staying client's call ended early (%d)", response.StatusCode)
	}
}

func TestEveryAnswerHasOneDate(t *testing.T) {
	var out bytes.Buffer
	w := &connWriter{out: bufio.NewWriter(&out), header: http.Header{}}
	for _, given := range []string{"", "Mon, 07 Dec 2026 10:00:00 GMT"} {
		out.Reset()
		request, _ := http.NewRequest("GET", "/", nil)
		w.reset(request)
		if given != "" {
			w.Header().Set("Date", given) // the engine's own, passed on
		}
		w.WriteHeader(http.StatusOK)
		w.finish()
		w.out.Flush()
		response, err := http.ReadResponse(bufio.NewReader(&out), request)
		if err != nil {
			t.Fatal(err)
		}
		dates := response.Header.Values("Date")
		if len(dates) != 1 {
			t.Fatalf("Date headers %q (given %q)", dates, given)
		}
		if at, err := http.ParseTime(dates[0]); given == "" && (err != nil || time.Since(at).Abs() > 5*time.Second) {
			t.Errorf("the pump's own Date %q is not now", dates[0])
		} else if given != "" && dates[0] != given {
			t.Errorf("the given Date became %q", dates[0])
		}
	}
}
