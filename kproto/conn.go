package kproto

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultIdleTimeout is Kafka's default connections.max.idle.ms.
const DefaultIdleTimeout = 10 * time.Minute

// DefaultMaxInFlight is the number of responses a connection may have pending
// when ConnConfig leaves MaxInFlight zero.
const DefaultMaxInFlight = 100

const (
	readBufBytes  = 16 << 10 // frames larger than this bypass the buffer
	writeBufBytes = 64 << 10
	// keepEncodeBytes bounds the encode buffer a connection keeps between
	// responses, so one large Fetch answer does not pin its size forever.
	keepEncodeBytes = 1 << 20
)

// ConnConfig configures Serve.
type ConnConfig struct {
	// MaxFrameBytes is the largest request frame accepted; a larger one
	// closes the connection. Zero means DefaultMaxFrameBytes.
	MaxFrameBytes int32
	// MaxInFlight is how many responses may be pending on a connection
	// before the read loop stops reading: the backpressure on a client that
	// pipelines faster than it is answered. Zero means DefaultMaxInFlight.
	MaxInFlight int
	// Logger receives one line per connection that ends abnormally.
	Logger zerolog.Logger
	// BadInput, if set, takes the connections closed for bad input
	// instead of Logger (see BadInput).
	BadInput *BadInput
	// IdleTimeout closes a connection on which no request has begun for
	// this long (Kafka's connections.max.idle.ms); zero means 10 minutes,
	// negative never.
	IdleTimeout time.Duration
	// Buffers, if set, lends encode buffers to connections; a server
	// shares one among all its connections so that large responses reuse
	// buffers instead of allocating and growing new ones.
	Buffers *BufferPool
}

// BufferPool shares response encode buffers between connections.
type BufferPool struct{ p sync.Pool }

func (bp *BufferPool) get() []byte {
	if v, ok := bp.p.Get().(*[]byte); ok {
		return (*v)[:0]
	}
	return make([]byte, 0, writeBufBytes)
}

func (bp *BufferPool) put(b []byte) { bp.p.Put(&b) }

func (c ConnConfig) withDefaults() ConnConfig {
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c
}

// slot holds the response to one request until the write loop's turn comes,
// which keeps responses in request order however they complete.
type slot struct {
	ch       chan kmsg.Response // capacity 1, so respond never blocks
	answered atomic.Bool
	closes   atomic.Bool // answered with CloseConnection
	key      int16
	version  int16 // the version to encode the response at
	corrID   int32
}

// respond is the function handlers receive. A second call is a handler bug;
// it is dropped rather than allowed to block or to answer a later request.
func (s *slot) respond(resp kmsg.Response) {
	if s.answered.CompareAndSwap(false, true) {
		if resp == CloseConnection {
			s.closes.Store(true)
		}
		s.ch <- resp
	}
}

// conn is the state Serve shares between its read and write loops.
type conn struct {
	nc        net.Conn
	cfg       ConnConfig
	info      ConnInfo
	parser    parser
	queue     chan *slot    // slots in request order; its capacity is the backpressure
	stop      chan struct{} // closed by Serve when reading has ended
	writeDone chan struct{} // closed when the write loop has returned
	writeErr  error         // set by the write loop before writeDone closes
	closeOnce sync.Once
}

func (c *conn) close() { c.closeOnce.Do(func() { _ = c.nc.Close() }) }

// Serve speaks the Kafka protocol on nc until the peer closes it, a request
// cannot be served (a protocol error, returned wrapped), a write fails, or
// ctx is cancelled (ctx.Err() is returned). It owns nc and closes it before
// returning; peer closing between requests returns nil.
//
// Requests are read, decoded and handed to their handlers on the calling
// goroutine, in order; one writer goroutine sends the responses in the same
// order. The ctx given to handlers is cancelled when Serve returns, so a
// long-polling handler can stop waiting for a connection that is gone.
// Nothing Serve starts outlives it.
func Serve(ctx context.Context, nc net.Conn, reg *Registry, cfg ConnConfig) error {
	cfg = cfg.withDefaults()
	c := &conn{
		nc:     nc,
		cfg:    cfg,
		info:   ConnInfo{RemoteAddr: addrString(nc.RemoteAddr()), LocalAddr: addrString(nc.LocalAddr())},
		parser: parser{reg: reg},
		// The write loop holds one slot while it waits for its response,
		// so the queue holds the other MaxInFlight-1.
		queue:     make(chan *slot, cfg.MaxInFlight-1),
		stop:      make(chan struct{}),
		writeDone: make(chan struct{}),
	}

	// Closing the socket is the only way to interrupt a blocked Read or
	// Write, so cancellation closes it.
	watchDone := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		c.close()
		close(watchDone)
	})

	handlerCtx, cancelHandlers := context.WithCancel(ctx)
	go func() {
		defer close(c.writeDone)
		c.writeErr = c.writeLoop()
	}()

	readErr := c.readLoop(handlerCtx)
	if errors.Is(readErr, ErrClosedByHandler) {
		// The writer sends what precedes the close, then closes.
		select {
		case <-c.writeDone:
		case <-ctx.Done():
		}
	}
	close(c.stop) // before close, so the writer ignores the errors close causes
	c.close()
	<-c.writeDone
	if !unwatch() {
		<-watchDone
	}
	cancelHandlers()

	err := readErr
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case c.writeErr != nil:
		// The writer closed the socket under the reader; its error is
		// the cause.
		err = c.writeErr
	}
	c.logEnd(err)
	return err
}

func (c *conn) logEnd(err error) {
	if err == nil {
		return
	}
	var ev *zerolog.Event
	switch {
	case errors.Is(err, ErrBadResponse):
		ev = c.cfg.Logger.Error()
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnknownAPI), errors.Is(err, ErrUnsupportedVersion),
		errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrNegativeSize):
		if c.cfg.BadInput != nil {
			c.cfg.BadInput.note(c.info.RemoteAddr, err)
			return
		}
		ev = c.cfg.Logger.Info()
	default: // the network or shutdown; routine
		ev = c.cfg.Logger.Debug()
	}
	ev.Str("remote", c.info.RemoteAddr).Err(err).Msg("kafka connection closed")
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// readLoop reads, decodes and dispatches requests until the connection
// ends. It returns nil when the peer closes between frames.
func (c *conn) readLoop(ctx context.Context) error {
	br := bufio.NewReaderSize(c.nc, readBufBytes)
	var sizeBuf [4]byte
	for {
		if c.cfg.IdleTimeout > 0 && br.Buffered() == 0 {
			if err := c.nc.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout)); err != nil {
				return fmt.Errorf("read: %w", err)
			}
		}
		body, err := readFrame(br, c.cfg.MaxFrameBytes, sizeBuf[:])
		if err != nil {
			if err == io.EOF {
				return nil
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%w: no request for %v", ErrIdle, c.cfg.IdleTimeout)
			}
			return fmt.Errorf("read: %w", err)
		}
		req, reply, api, err := c.parser.parse(body)
		if err != nil {
			return err
		}
		req.Conn = &c.info

		s := &slot{ch: make(chan kmsg.Response, 1), key: req.Key, version: req.Version, corrID: req.CorrelationID}
		if reply != nil {
			s.version = reply.GetVersion() // a v0 ApiVersions answer to a newer request
		}
		select {
		case c.queue <- s:
		case <-c.writeDone:
			return errWriterEnded
		case <-ctx.Done():
			return ctx.Err()
		}
		if reply != nil {
			s.respond(reply)
			continue
		}
		api.Handle(ctx, req, s.respond)
		if s.closes.Load() {
			// Requests behind this one are not read, as in Kafka, which
			// reads a connection's next request only after answering.
			return ErrClosedByHandler
		}
	}
}

// writeLoop sends responses in request order. It flushes only when the next
// response is not ready yet, so pipelined responses share syscalls.
func (c *conn) writeLoop() error {
	bw := bufio.NewWriterSize(c.nc, writeBufBytes)
	var buf []byte
	for {
		var s *slot
		select {
		case s = <-c.queue:
		default:
			if err := c.flush(bw); err != nil {
				return err
			}
			select {
			case s = <-c.queue:
			case <-c.stop:
				return nil
			}
		}

		var resp kmsg.Response
		select {
		case resp = <-s.ch:
		default:
			if err := c.flush(bw); err != nil {
				return err
			}
			select {
			case resp = <-s.ch:
			case <-c.stop:
				return nil
			}
		}
		if resp == nil {
			continue // acks=0 produce: the client expects nothing
		}
		if resp == CloseConnection {
			if err := c.flush(bw); err != nil {
				return err
			}
			c.close()
			return ErrClosedByHandler
		}
		if resp.Key() != s.key {
			c.close()
			return fmt.Errorf("%w: %s answered with %s", ErrBadResponse, kmsg.NameForKey(s.key), kmsg.NameForKey(resp.Key()))
		}

		resp.SetVersion(s.version)
		if c.cfg.Buffers != nil {
			buf = c.cfg.Buffers.get()
		}
		buf = append(buf[:0], 0, 0, 0, 0) // size, filled in below
		buf = AppendResponseHeader(buf, resp, s.corrID)
		buf = resp.AppendTo(buf)
		binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
		_, err := bw.Write(buf)
		if c.cfg.Buffers != nil {
			c.cfg.Buffers.put(buf)
			buf = nil
		} else if cap(buf) > keepEncodeBytes {
			buf = nil
		}
		if err != nil {
			return c.writeFailed(err)
		}
	}
}

func (c *conn) flush(bw *bufio.Writer) error {
	if bw.Buffered() == 0 {
		return nil
	}
	if err := bw.Flush(); err != nil {
		return c.writeFailed(err)
	}
	return nil
}

// writeFailed closes the connection so the read loop stops too. Errors after
// Serve began closing are its own doing and not reported.
func (c *conn) writeFailed(err error) error {
	select {
	case <-c.stop:
		return nil
	default:
	}
	c.close()
	return fmt.Errorf("write: %w", err)
}
