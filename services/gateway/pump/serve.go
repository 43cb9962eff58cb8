package main

// The tenants' HTTP/1.1 server: a loop per client connection that reads a request with
// net/http's own parser (http.ReadRequest), serves it and writes the answer straight into the
// connection's buffer. Owning the connection is what lets a carried call's reads and writes be
// raw system calls (rawio.go): 28-30 µs of CPU per GET _doc became 21 µs on two shared cores.
// The loop alone, with ordinary reads and writes, measured no cheaper than net/http's server.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	readHeaderTimeout = 30 * time.Second
	idleTimeout       = 5 * time.Minute
	maxHeaderBytes    = 1 << 20
	discardLimit      = 256 << 10 // an unread request body up to this is skipped; a longer one ends the connection
)

// Server: the pump's listener, its connections, and a shutdown that lets calls in flight finish.
type Server struct {
	pump     *Pump
	mu       sync.Mutex
	listener net.Listener
	conns    map[net.Conn]bool // true while the connection waits for its next request
	stopping atomic.Bool
	done     sync.WaitGroup
}

func (p *Pump) Server() *Server { return &Server{pump: p, conns: map[net.Conn]bool{}} }

// Serve accepts connections until Shutdown; it returns http.ErrServerClosed then.
func (s *Server) Serve(listener net.Listener) error {
	s.mu.Lock()
	s.listener = listener
	s.mu.Unlock()
	for {
		conn, err := listener.Accept()
		if err != nil {
			if s.stopping.Load() {
				return http.ErrServerClosed
			}
			var transient interface{ Temporary() bool }
			if errors.As(err, &transient) && transient.Temporary() {
				time.Sleep(10 * time.Millisecond) // out of file descriptors, say: try again
				continue
			}
			return err
		}
		if !s.track(conn, true) {
			conn.Close()
			return http.ErrServerClosed
		}
		s.done.Add(1)
		go s.serveConn(conn)
	}
}

// Shutdown: no new connections, idle ones closed, busy ones closed as their call ends; it waits
// for them until ctx ends, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) {
	s.stopping.Store(true)
	s.mu.Lock()
	if s.listener != nil {
		s.listener.Close()
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.done.Wait(); close(finished) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.closeConns(false)
		select {
		case <-finished:
			return
		case <-ctx.Done():
			s.closeConns(true)
			return
		case <-tick.C:
		}
	}
}

func (s *Server) closeConns(busyToo bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for conn, idle := range s.conns {
		if idle || busyToo {
			conn.Close()
		}
	}
}

// track a connection's state; false: the server is stopping and a waiting connection must end.
func (s *Server) track(conn net.Conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[conn] = idle
	return !(idle && s.stopping.Load())
}

// limited: the connection's reader, bounded while a request's header is read.
type limited struct {
	conn      io.Reader
	remaining int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.remaining <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.conn.Read(p)
	l.remaining -= int64(n)
	return n, err
}

var errHeaderTooLarge = errors.New("request header too large")

func (s *Server) serveConn(conn net.Conn) {
	defer s.done.Done()
	engines := s.pump.clients.opened(conn)
	source := &limited{conn: rawOf(conn)}
	reader := bufio.NewReaderSize(source, 16<<10)
	ctx, cancel := context.WithCancel(context.WithValue(context.WithValue(context.Background(), connKey{}, engines),
		watchKey{}, &clientWatch{conn: conn, reader: reader}))
	defer func() {
		cancel()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		s.pump.clients.closed(conn)
		conn.Close()
	}()
	w := &connWriter{out: bufio.NewWriterSize(rawOf(conn), 16<<10), header: http.Header{}}
	remote := conn.RemoteAddr().String()
	for {
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		source.remaining = maxHeaderBytes + 4096 // as net/http: a little slack past the limit
		if _, err := reader.Peek(1); err != nil {
			return // closed, idle too long, or a shutdown
		}
		if !s.track(conn, false) {
			return
		}
		conn.SetReadDeadline(time.Now().Add(readHeaderTimeout))
		r, err := http.ReadRequest(reader)
		source.remaining = 1 << 62
		if err != nil {
			refuse(conn, w.out, err)
			return
		}
		if r.Body != http.NoBody { // a body may take its time, as with net/http's ReadHeaderTimeout alone
			conn.SetReadDeadline(time.Time{})
		}
		if problem := badRequest(r); problem != "" {
			refuse(conn, w.out, errors.New(problem))
			return
		}
		r.RemoteAddr = remote
		r = r.WithContext(ctx)
		if continued, ok := expectContinue(r, w.out); !ok {
			refuse(conn, w.out, errExpectation)
			return
		} else if continued != nil {
			r.Body = continued
		}
		w.reset(r)
		if !s.serveOne(w, r) {
			return
		}
		keep := w.finish()
		if w.out.Flush() != nil || !keep || !finishBody(r) || s.stopping.Load() {
			return
		}
		if !s.track(conn, true) {
			return
		}
	}
}

// serveOne: the pump serves one call; false: the handler aborted (a cut answer) and the connection ends.
func (s *Server) serveOne(w *connWriter, r *http.Request) (ok bool) {
	defer func() {
		if failure := recover(); failure != nil {
			if failure != http.ErrAbortHandler {
				log.Printf("ess-pump: serving %s %s: %v", r.Method, r.URL.Path, failure)
			}
			ok = false
		}
	}()
	s.pump.ServeHTTP(w, r)
	return true
}

var errExpectation = errors.New("only 100-continue is expected")

// refuse: the answer to a request that could not be read or is malformed (as net/http gives it),
// then the connection ends: its write side first, and a pause, so the client reads the answer
// before an unread request makes the kernel reset the connection.
func refuse(conn net.Conn, out *bufio.Writer, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err) {
		return // the client went away or sent nothing in time
	}
	status := "400 Bad Request"
	switch {
	case errors.Is(err, errHeaderTooLarge):
		status = "431 Request Header Fields Too Large"
	case errors.Is(err, errExpectation):
		status = "417 Expectation Failed"
	}
	out.WriteString("HTTP/1.1 " + status + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
		status + ": " + err.Error())
	if out.Flush() != nil {
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		tcp.CloseWrite()
		time.Sleep(500 * time.Millisecond) // net/http's own pause (rstAvoidanceDelay)
	}
}

func isTimeout(err error) bool {
	var timeout net.Error
	return errors.As(err, &timeout) && timeout.Timeout()
}

// badRequest: what net/http's server refuses beyond the parser (ReadRequest already refuses a
// second Host header and a malformed name): no Host in 1.1, a malformed one, a control byte in a value.
func badRequest(r *http.Request) string {
	if r.ProtoMajor != 1 {
		return "unsupported protocol version"
	}
	if r.Host == "" && r.ProtoAtLeast(1, 1) && r.Method != http.MethodConnect {
		return "missing required Host header"
	}
	for i := 0; i < len(r.Host); i++ {
		if !hostByte(r.Host[i]) {
			return "malformed Host header"
		}
	}
	for _, values := range r.Header {
		for _, value := range values {
			for i := 0; i < len(value); i++ {
				if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
					return "invalid header value"
				}
			}
		}
	}
	return ""
}

// hostByte: RFC 3986's reg-name, IP literal and port characters (net/http's own check allows these).
func hostByte(c byte) bool {
	return alnum(c) || strings.IndexByte("!$&'()*+,;=:[]._~-%", c) >= 0
}

// expectContinue: a body behind `Expect: 100-continue` gets the interim answer when first read;
// ok false for any other expectation (417, as net/http).
func expectContinue(r *http.Request, out *bufio.Writer) (io.ReadCloser, bool) {
	expect := r.Header.Get("Expect")
	if expect == "" {
		return nil, true
	}
	if !strings.EqualFold(expect, "100-continue") || !r.ProtoAtLeast(1, 1) {
		return nil, false
	}
	r.Header.Del("Expect")
	if r.ContentLength == 0 {
		return nil, true
	}
	return &continueReader{ReadCloser: r.Body, out: out}, true
}

type continueReader struct {
	io.ReadCloser
	out  *bufio.Writer
	sent bool
}

func (c *continueReader) Read(p []byte) (int, error) {
	if !c.sent {
		c.sent = true
		c.out.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
		if err := c.out.Flush(); err != nil {
			return 0, err
		}
	}
	return c.ReadCloser.Read(p)
}

// Close: a body never asked for is never read (the client still waits for the 100); the
// connection ends instead (finishBody).
func (c *continueReader) Close() error {
	if !c.sent {
		return nil
	}
	return c.ReadCloser.Close()
}

// finishBody: the rest of the request's body is read, so the next request starts where it should;
// false when too much is left (the connection ends instead).
func finishBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	if continued, ok := r.Body.(*continueReader); ok && !continued.sent {
		return false // the client waits for a 100 that never came: it sends no body, end the connection
	}
	n, err := io.CopyN(io.Discard, r.Body, discardLimit+1)
	if errors.Is(err, http.ErrBodyReadAfterClose) {
		return true // closed by whoever read it, which reads a request body to its end
	}
	return err == io.EOF && n <= discardLimit
}
