package main

// The carried calls' reads and writes as plain system calls. Go's net.Conn makes each one a
// blocking-capable call: the runtime marks the processor as in a system call, and its monitor
// thread, waking every 20 µs while any is, hands the processor to another thread when a loopback
// write runs long (it runs the receiver's TCP stack too, and is often preempted on the way out).
// On two shared cores that hand-off and the monitor's own wake-ups were a sixth of the pump's
// CPU. A non-blocking socket never blocks, so the pump makes the call raw and, on EAGAIN, waits
// in the runtime's poller as net.Conn does (syscall.RawConn), deadlines included.

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

type rawIO struct {
	raw   syscall.RawConn
	chunk []byte // what the current call reads into or writes from
	n     int
	errno syscall.Errno
	read  func(fd uintptr) bool // made once: a closure per call would be garbage per call
	write func(fd uintptr) bool
}

// rawOf: the connection's raw reads and writes, or the connection itself where it has no descriptor.
func rawOf(conn net.Conn) io.ReadWriter {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return conn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return conn
	}
	r := &rawIO{raw: raw}
	r.read = func(fd uintptr) bool { return r.call(syscall.SYS_READ, fd) }
	r.write = func(fd uintptr) bool { return r.call(syscall.SYS_WRITE, fd) }
	return r
}

// call: one read or write; false (EAGAIN) waits in the poller until the socket is ready.
func (r *rawIO) call(number, fd uintptr) bool {
	for {
		n, _, errno := syscall.RawSyscall(number, fd, uintptr(unsafe.Pointer(&r.chunk[0])), uintptr(len(r.chunk)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), errno
		return true
	}
}

func (r *rawIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.chunk = p
	err := r.raw.Read(r.read)
	r.chunk = nil
	switch {
	case err != nil:
		return 0, err // a deadline passed or the connection was closed
	case r.errno != 0:
		return 0, r.errno
	case r.n == 0:
		return 0, io.EOF
	}
	return r.n, nil
}

func (r *rawIO) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		r.chunk = p[written:]
		err := r.raw.Write(r.write)
		r.chunk = nil
		if err != nil {
			return written, err
		}
		if r.errno != 0 {
			return written, r.errno
		}
		written += r.n
	}
	return written, nil
}
