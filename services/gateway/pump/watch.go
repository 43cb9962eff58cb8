package main

// A client that leaves while the Python gateway serves its call (a call held through a wake can
// wait seconds) ends that call there too, as net/http's server did: once the call's body is read,
// the connection is watched for its end. Only these calls are watched; a carried call is not
// (the watch costs a goroutine and a read, which is what the server loop saves on them).

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

type watchKey struct{}

// clientWatch: one connection's reader, which nothing else reads while its call is served.
type clientWatch struct {
	conn   net.Conn
	reader *bufio.Reader
}

// watched: the request with a context that ends if the client leaves, and the function that
// ends the watch (before the connection reads its next request).
func watched(r *http.Request) (*http.Request, func()) {
	watch, _ := r.Context().Value(watchKey{}).(*clientWatch)
	if watch == nil {
		return r, func() {}
	}
	ctx, cancel := context.WithCancel(r.Context())
	var once sync.Once
	var done chan struct{}
	begin := func() {
		once.Do(func() {
			done = make(chan struct{})
			go func() {
				defer close(done)
				if _, err := watch.reader.Peek(1); err != nil && !isTimeout(err) {
					cancel() // the client closed or reset its connection
				}
			}()
		})
	}
	r = r.WithContext(ctx)
	if r.Body == nil || r.Body == http.NoBody {
		begin()
	} else {
		r.Body = &onEOF{ReadCloser: r.Body, eof: begin}
	}
	return r, func() {
		once.Do(func() {}) // a body never read to its end starts no watch from here on
		if done != nil {
			watch.conn.SetReadDeadline(time.Unix(1, 0)) // wakes the watching read
			<-done
			watch.conn.SetReadDeadline(time.Time{})
		}
		cancel()
	}
}

// onEOF: a request body that starts the watch once it is read to its end.
type onEOF struct {
	io.ReadCloser
	eof func()
}

func (b *onEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof()
	}
	return n, err
}
