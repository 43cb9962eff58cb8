package main

// The answer to one call as it goes out on the client's connection: the status line and header
// written into the connection's buffer, then the body with its length, in chunks, or up to the
// connection's end for an HTTP/1.0 client; a Date header as net/http's server gave one.

import (
	"bufio"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// connWriter: the answer to one call, written into the connection's buffer (an http.ResponseWriter
// and http.Flusher for the pump's handler and the reverse proxy to the Python gateway).
type connWriter struct {
	out         *bufio.Writer
	header      http.Header
	request     *http.Request
	wroteHeader bool
	chunked     bool  // no length given: chunks (HTTP/1.1)
	closeAfter  bool  // no length given to an HTTP/1.0 client, or a short body: the connection ends
	noBody      bool  // HEAD, 1xx, 204, 304
	length      int64 // the Content-Length given, or -1
	written     int64
}

func (w *connWriter) reset(r *http.Request) {
	clear(w.header)
	w.request, w.wroteHeader, w.chunked, w.closeAfter, w.noBody, w.length, w.written = r, false, false, r.Close, false, -1, 0
}

func (w *connWriter) Header() http.Header { return w.header }

func (w *connWriter) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		w.statusLine(status)
		w.headerLines()
		w.out.WriteString("\r\n")
		return // an interim answer: the final one follows
	}
	w.wroteHeader = true
	w.noBody = w.request.Method == http.MethodHead || status == http.StatusNoContent ||
		status == http.StatusNotModified || status < 200
	w.header.Del("Transfer-Encoding")
	if given := w.header.Get("Content-Length"); given != "" {
		if n, err := strconv.ParseInt(given, 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	if w.length < 0 && !w.noBody {
		if w.request.ProtoAtLeast(1, 1) {
			w.chunked = true
		} else {
			w.closeAfter = true
		}
	}
	w.statusLine(status)
	w.headerLines()
	if _, dated := w.header["Date"]; !dated { // written, not put in the map: no slice per answer
		w.out.WriteString("Date: ")
		w.out.WriteString(now())
		w.out.WriteString("\r\n")
	}
	if w.chunked {
		w.out.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		w.out.WriteString("Connection: close\r\n")
	} else if !w.request.ProtoAtLeast(1, 1) {
		w.out.WriteString("Connection: keep-alive\r\n")
	}
	w.out.WriteString("\r\n")
}

func (w *connWriter) statusLine(status int) {
	w.out.WriteString("HTTP/1.1 ")
	w.out.WriteString(strconv.Itoa(status))
	w.out.WriteString(" ")
	w.out.WriteString(http.StatusText(status))
	w.out.WriteString("\r\n")
}

func (w *connWriter) headerLines() {
	for name, values := range w.header {
		if name == "Connection" || name == "Keep-Alive" {
			continue // the pump's own connection's, written above
		}
		for _, value := range values {
			w.out.WriteString(name)
			w.out.WriteString(": ")
			w.out.WriteString(value)
			w.out.WriteString("\r\n")
		}
	}
}

func (w *connWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody || len(p) == 0 {
		return len(p), nil
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.chunked {
		w.out.WriteString(strconv.FormatInt(int64(len(p)), 16))
		w.out.WriteString("\r\n")
		w.out.Write(p)
		_, err := w.out.WriteString("\r\n")
		return len(p), err
	}
	return w.out.Write(p)
}

func (w *connWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.out.Flush()
}

// finish the answer; false: the connection must end after it.
func (w *connWriter) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.chunked {
		w.out.WriteString("0\r\n\r\n")
	}
	if w.length >= 0 && w.written != w.length && !w.noBody {
		w.closeAfter = true // a short body: the client must see the connection end
	}
	return !w.closeAfter
}

// now: the Date header's value, formatted once a second.
func now() string {
	second := time.Now().Unix()
	if cached := dateCache.Load(); cached != nil && cached.second == second {
		return cached.text
	}
	text := time.Unix(second, 0).UTC().Format(http.TimeFormat)
	dateCache.Store(&dated{second, text})
	return text
}

type dated struct {
	second int64
	text   string
}

var dateCache atomic.Pointer[dated]
