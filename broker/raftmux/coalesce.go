package raftmux

import (
	"net"
	"runtime"
	"sync"
	"time"
)

const (
	// directWrite is the size from which a write skips the buffer.
	directWrite = 32 << 10
	// maxBuffered bounds what a slow peer can make a session buffer.
	maxBuffered = 8 << 20
)

// coalescer gathers the many small frames of a session (a Raft heartbeat
// is a yamux header and a small body, two writes) into few syscalls: a
// write is buffered and a flusher goroutine sends whatever accumulated once
// the writer has yielded. Large writes go straight out, after the buffer.
// A write error is returned by a later write and closes the connection.
type coalescer struct {
	net.Conn

	wmu sync.Mutex // serialises writes to the connection

	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	spare  []byte
	err    error
	closed bool
	kick   chan struct{} // never closed: writers may still signal it
	stop   chan struct{}
}

func newCoalescer(c net.Conn) *coalescer {
	w := &coalescer{Conn: c, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.flushLoop()
	return w
}

func (w *coalescer) Write(p []byte) (int, error) {
	if len(p) >= directWrite {
		w.wmu.Lock()
		defer w.wmu.Unlock()
		if err := w.flush(); err != nil {
			return 0, err
		}
		n, err := w.Conn.Write(p)
		if err != nil {
			w.fail(err)
		}
		return n, err
	}
	w.mu.Lock()
	for len(w.buf) > maxBuffered && w.err == nil && !w.closed {
		w.cond.Wait()
	}
	if w.err != nil || w.closed {
		err := w.err
		w.mu.Unlock()
		if err == nil {
			err = net.ErrClosed
		}
		return 0, err
	}
	w.buf = append(w.buf, p...)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *coalescer) flushLoop() {
	for {
		select {
		case <-w.kick:
		case <-w.stop:
			return
		}
		// Let the writer finish the frame (and others queue theirs)
		// before sending. (A timed linger to catch other groups' frames
		// was measured: its timer wake-ups cost more than it saves.)
		runtime.Gosched()
		w.wmu.Lock()
		err := w.flush()
		w.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// flush sends the buffer; w.wmu is held.
func (w *coalescer) flush() error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if len(w.buf) == 0 {
		w.mu.Unlock()
		return nil
	}
	// Swap buffers: writers fill the spare while b is sent. The two never
	// share an array.
	b := w.buf
	w.buf = w.spare[:0]
	w.mu.Unlock()
	_, err := w.Conn.Write(b)
	w.mu.Lock()
	w.spare = b[:0]
	w.cond.Broadcast()
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
	}
	return err
}

func (w *coalescer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	_ = w.Conn.Close()
}

// Close sends what is buffered, stops the flusher and closes the
// connection. It does not wait for the flusher to be scheduled, which
// ends by itself, and a peer that does not read (a frozen broker) holds
// it up for closeFlushWait at most.
func (w *coalescer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	_ = w.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait))
	close(w.stop)
	w.wmu.Lock()
	_ = w.flush()
	w.wmu.Unlock()
	return w.Conn.Close()
}

// closeFlushWait bounds how long Close tries to send what is buffered.
const closeFlushWait = time.Second
