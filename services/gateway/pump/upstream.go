package main

// The engine side of a carried call: one engine connection per client connection and engine,
// used by that client connection's calls one after another (HTTP/1.1 without pipelining). This
// skips the shared transport's pool and its goroutine hand-offs per request, which cost the pump
// more CPU than the bytes did.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Proxy-Authorization": true}

// not passed to the engine: hop-by-hop, the tenant's key, what the pump writes itself
var notForwarded = map[string]bool{"Authorization": true, "Host": true, "Content-Length": true, "Expect": true}

type engineConn struct {
	conn   net.Conn
	reader *bufio.Reader
	writer *bufio.Writer
	grant  *Grant // the grant it was opened under: a new grant (a restarted engine, say) opens a new one
}

// clientConns: each client connection's engine connections, closed with it.
type clientConns struct {
	mu    sync.Mutex
	byKey map[net.Conn]map[string]*engineConn
}

type connKey struct{}

func (c *clientConns) opened(conn net.Conn) map[string]*engineConn {
	engines := map[string]*engineConn{}
	c.mu.Lock()
	c.byKey[conn] = engines
	c.mu.Unlock()
	return engines
}

func (c *clientConns) closed(conn net.Conn) {
	c.mu.Lock()
	engines := c.byKey[conn]
	delete(c.byKey, conn)
	c.mu.Unlock()
	for _, e := range engines {
		e.conn.Close()
	}
}

// notSent: the engine could not be reached; nothing went out, so the call may be served elsewhere.
type notSent struct{ err error }

func (n notSent) Error() string { return n.err.Error() }

// exchange sends one call to the engine at hostport and returns its answer (body unread).
func exchange(engines map[string]*engineConn, grant *Grant, hostport string, r *http.Request, target string,
	body io.Reader, timeout time.Duration) (*http.Response, *engineConn, error) {
	for attempt := 0; ; attempt++ {
		e := engines[hostport]
		reused := e != nil && e.grant == grant
		if e != nil && !reused {
			e.conn.Close()
			e = nil
		}
		if e == nil {
			conn, err := net.DialTimeout("tcp", hostport, 5*time.Second)
			if err != nil {
				delete(engines, hostport)
				return nil, nil, notSent{err}
			}
			e = &engineConn{conn: conn, reader: bufio.NewReaderSize(rawOf(conn), 16<<10),
				writer: bufio.NewWriterSize(rawOf(conn), 16<<10), grant: grant}
			engines[hostport] = e
		}
		e.conn.SetDeadline(time.Now().Add(timeout))
		err := writeRequest(e.writer, r, hostport, target, grant.Authorization, body)
		var response *http.Response
		if err == nil {
			response, err = http.ReadResponse(e.reader, &http.Request{Method: r.Method})
		}
		if err == nil {
			return response, e, nil
		}
		e.conn.Close()
		delete(engines, hostport)
		// an idle connection the engine closed: sent again once, where sending twice is harmless
		if reused && attempt == 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			continue
		}
		return nil, nil, err
	}
}

func writeRequest(w *bufio.Writer, r *http.Request, host, target, authorization string, body io.Reader) error {
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, target, host)
	for name, values := range r.Header {
		if hopByHop[name] || notForwarded[name] {
			continue
		}
		for _, value := range values {
			w.WriteString(name)
			w.WriteString(": ")
			w.WriteString(value)
			w.WriteString("\r\n")
		}
	}
	if authorization != "" { // the engine's own credentials, never the tenant's key
		w.WriteString("Authorization: " + authorization + "\r\n")
	}
	if r.ContentLength > 0 {
		w.WriteString("Content-Length: " + strconv.FormatInt(r.ContentLength, 10) + "\r\n")
	}
	w.WriteString("\r\n")
	if r.ContentLength > 0 && body != nil {
		buffer := buffers.Get()
		_, err := io.CopyBuffer(w, io.LimitReader(body, r.ContentLength), buffer)
		buffers.Put(buffer)
		if err != nil {
			return err
		}
	}
	return w.Flush()
}

// writerOnly hides the ResponseWriter's ReadFrom, which writes the first 512 bytes and the rest in two
// packets: an answer that fits the server's buffer goes out in one write.
type writerOnly struct{ io.Writer }

// answer copies the engine's answer to the client; false: the engine connection is not reusable.
func answer(w http.ResponseWriter, response *http.Response) (int64, bool) {
	header := w.Header()
	for name, values := range response.Header {
		if !hopByHop[name] {
			header[name] = values
		}
	}
	if response.ContentLength >= 0 {
		header["Content-Length"] = []string{strconv.FormatInt(response.ContentLength, 10)}
	}
	w.WriteHeader(response.StatusCode)
	buffer := buffers.Get()
	sent, err := io.CopyBuffer(writerOnly{w}, response.Body, buffer)
	buffers.Put(buffer)
	response.Body.Close()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || sent > 0 {
			panic(http.ErrAbortHandler) // a cut answer: the client must see the connection end, not a short body
		}
		return sent, false
	}
	return sent, !response.Close
}
