// Package raftmux carries the traffic of many Raft groups between brokers
// over one yamux session per pair of brokers, on the brokers' own Kafka
// listen addresses.
//
// A connection that starts with Magic is a Raft session; anything else is a
// Kafka client (a Kafka frame starts with its size, and Magic read as a size
// is far beyond any frame a broker accepts). Each stream of a session starts
// with the name of the Raft group it belongs to, and is handed to that
// group's StreamLayer, which hashicorp/raft's NetworkTransport uses as its
// network.
package raftmux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/hashicorp/yamux"
	"github.com/rs/zerolog"
)

// Magic opens every Raft session. As a big-endian int32 frame size it is
// 1,346,851,377 bytes, over ten times Kafka's largest request.
var Magic = [4]byte{'P', 'G', 'R', '1'}

// maxGroupName bounds the stream header.
const maxGroupName = 255

// Errors of the package.
var (
	ErrClosed       = errors.New("raftmux: closed")
	ErrUnknownGroup = errors.New("raftmux: unknown raft group")
	ErrBadHeader    = errors.New("raftmux: bad stream header")
)

// Mux is one broker's end of the Raft sessions.
type Mux struct {
	log  zerolog.Logger
	self raft.ServerAddress
	dial func(addr string, timeout time.Duration) (net.Conn, error)

	hb HeartbeatConfig

	// Heartbeat frames received and the heartbeats they carried.
	hbFrames, hbDelivered atomic.Int64

	mu       sync.Mutex
	closed   bool
	layers   map[string]*Layer
	added    chan struct{}                         // closed (and replaced) when a layer is added
	sessions map[raft.ServerAddress]*yamux.Session // outbound, by peer
	inbound  map[*yamux.Session]struct{}
	hbPeers  map[raft.ServerAddress]*hbPeer
	done     chan struct{} // closed by Close
	wg       sync.WaitGroup

	// streams are the open streams of each session, so that their reads
	// can end before the session shuts down (see stopReads).
	streamsMu sync.Mutex
	streams   map[*yamux.Session]*sessionStreams
}

// HeartbeatConfig sets how heartbeats of many groups share frames.
type HeartbeatConfig struct {
	// Window is how long a heartbeat waits for others to share its
	// frame. It delays each heartbeat by as much, so it must stay well
	// below the groups' LeaderLeaseTimeout.
	Window time.Duration
	// Timeout fails a heartbeat that got no answer in this time.
	Timeout time.Duration
}

// DefaultHeartbeatConfig suits groups with a HeartbeatTimeout of a second.
func DefaultHeartbeatConfig() HeartbeatConfig {
	return HeartbeatConfig{Window: 200 * time.Millisecond, Timeout: 2 * time.Second}
}

// New returns a mux for the broker whose Kafka (and Raft) address is self.
func New(self raft.ServerAddress, log zerolog.Logger) *Mux {
	return &Mux{
		log:  log,
		self: self,
		dial: func(addr string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", addr, timeout)
		},
		hb:       DefaultHeartbeatConfig(),
		layers:   make(map[string]*Layer),
		added:    make(chan struct{}),
		sessions: make(map[raft.ServerAddress]*yamux.Session),
		inbound:  make(map[*yamux.Session]struct{}),
		streams:  make(map[*yamux.Session]*sessionStreams),
		hbPeers:  make(map[raft.ServerAddress]*hbPeer),
		done:     make(chan struct{}),
	}
}

// SetHeartbeatConfig replaces the heartbeat settings; call it before the
// first group starts.
func (m *Mux) SetHeartbeatConfig(c HeartbeatConfig) { m.hb = c }

// HeartbeatStats reports the heartbeat frames received so far and the
// heartbeats they carried.
func (m *Mux) HeartbeatStats() (frames, heartbeats int64) {
	return m.hbFrames.Load(), m.hbDelivered.Load()
}

// goFunc runs f on the mux's wait group unless the mux is closed.
func (m *Mux) goFunc(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

func (m *Mux) yamuxConfig() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cfg.Logger = nil
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = 5 * time.Second
	cfg.ConnectionWriteTimeout = 10 * time.Second
	// Raft appends carry up to about a megabyte; a larger window keeps one
	// stream from stalling on flow control at that size.
	cfg.MaxStreamWindowSize = 4 << 20
	return cfg
}

// Layer returns the StreamLayer of one Raft group, creating it. Streams for
// a group that has no layer are refused.
func (m *Mux) Layer(group string) (*Layer, error) {
	if len(group) == 0 || len(group) > maxGroupName || group == hbGroup {
		return nil, fmt.Errorf("%w: group name %q", ErrBadHeader, group)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if l, ok := m.layers[group]; ok {
		return l, nil
	}
	l := &Layer{mux: m, group: group, accept: make(chan net.Conn, 16), done: make(chan struct{})}
	m.layers[group] = l
	close(m.added)
	m.added = make(chan struct{})
	return l, nil
}

// ServeConn serves an inbound Raft session whose Magic has already been
// read from nc. It returns when the session ends.
func (m *Mux) ServeConn(nc net.Conn) {
	re := &readEnd{Conn: nc, m: m}
	sess, err := yamux.Server(newCoalescer(re), m.yamuxConfig())
	if err != nil {
		m.log.Warn().Err(err).Msg("raft session refused")
		nc.Close()
		return
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		sess.Close()
		return
	}
	m.inbound[sess] = struct{}{}
	m.watchLocked(sess)
	re.sess.Store(sess)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.inbound, sess)
		m.mu.Unlock()
		sess.Close()
	}()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		m.dispatch(m.track(st))
	}
}

// dispatch reads a stream's group header and hands the stream to its layer.
func (m *Mux) dispatch(st net.Conn) {
	_ = st.SetReadDeadline(time.Now().Add(10 * time.Second))
	group, err := readHeader(st)
	_ = st.SetReadDeadline(time.Time{})
	if err != nil {
		m.log.Debug().Err(err).Msg("raft stream refused")
		st.Close()
		return
	}
	if group == hbGroup {
		if !m.goFunc(func() { m.serveHeartbeats(st) }) {
			st.Close()
		}
		return
	}
	m.mu.Lock()
	l := m.layers[group]
	m.mu.Unlock()
	if l == nil {
		if !m.goFunc(func() { m.awaitLayer(group, st) }) {
			st.Close()
		}
		return
	}
	if !l.deliver(st) {
		st.Close()
	}
}

// layerWait bounds how long a stream for a group this broker does not run
// waits for the group to start.
const layerWait = 2 * time.Second

// awaitLayer hands st to the layer of group once the group starts, or
// closes it after layerWait. The replicas of a new partition open their
// groups at about the same time, and a restarted broker opens its groups
// once it has caught up with the metadata: a vote or an append that
// arrives a little early is answered as soon as the group runs, rather
// than refused and sent again after the transport's retry pause.
func (m *Mux) awaitLayer(group string, st net.Conn) {
	timer := time.NewTimer(layerWait)
	defer timer.Stop()
	for {
		m.mu.Lock()
		l, added := m.layers[group], m.added
		m.mu.Unlock()
		if l != nil {
			if !l.deliver(st) {
				st.Close()
			}
			return
		}
		select {
		case <-added:
		case <-timer.C:
			st.Close()
			return
		case <-m.done:
			st.Close()
			return
		}
	}
}

func readHeader(r io.Reader) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	if n[0] == 0 {
		return "", fmt.Errorf("%w: empty group name", ErrBadHeader)
	}
	name := make([]byte, n[0])
	if _, err := io.ReadFull(r, name); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	return string(name), nil
}

// session returns the outbound session to addr, dialling it if needed.
func (m *Mux) session(addr raft.ServerAddress, timeout time.Duration) (*yamux.Session, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if s, ok := m.sessions[addr]; ok && !s.IsClosed() {
		m.mu.Unlock()
		return s, nil
	}
	m.mu.Unlock()

	nc, err := m.dial(string(addr), timeout)
	if err != nil {
		return nil, fmt.Errorf("raftmux: dialling %s: %w", addr, err)
	}
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(Magic[:]); err != nil {
		nc.Close()
		return nil, fmt.Errorf("raftmux: opening session to %s: %w", addr, err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	re := &readEnd{Conn: nc, m: m}
	s, err := yamux.Client(newCoalescer(re), m.yamuxConfig())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("raftmux: session to %s: %w", addr, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		s.Close()
		return nil, ErrClosed
	}
	if old, ok := m.sessions[addr]; ok && !old.IsClosed() {
		s.Close() // another goroutine won the race
		return old, nil
	}
	m.sessions[addr] = s
	m.watchLocked(s)
	re.sess.Store(s)
	return s, nil
}

// readEnd ends the reads of its session's streams (see stopReads) when a
// read of the connection fails, before yamux learns of it and shuts the
// session down.
type readEnd struct {
	net.Conn
	m    *Mux
	sess atomic.Pointer[yamux.Session]
	once sync.Once
}

func (c *readEnd) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() {
			if s := c.sess.Load(); s != nil {
				c.m.stopReads(s)
			}
		})
	}
	return n, err
}

// watchLocked ends the reads of a session's streams as soon as the session
// shuts down, whatever shut it down (see stopReads); m.mu is held and the
// mux is open.
func (m *Mux) watchLocked(s *yamux.Session) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-s.CloseChan():
			m.stopReads(s)
		case <-m.done: // Close stops every read
		}
	}()
}

// Close ends every session and layer. It is safe to call more than once.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	m.stopReads(nil)
	// All at once: each waits for its receiver to stop.
	var wg sync.WaitGroup
	for _, s := range m.sessions {
		wg.Go(func() { s.Close() })
	}
	for s := range m.inbound {
		wg.Go(func() { s.Close() })
	}
	wg.Wait()
	for _, l := range m.layers {
		l.shut()
	}
	peers := m.hbPeers
	m.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
	m.wg.Wait()
	return nil
}

// Layer is the network of one Raft group: a raft.StreamLayer.
type Layer struct {
	mux    *Mux
	group  string
	accept chan net.Conn
	once   sync.Once
	done   chan struct{}

	hbMu sync.Mutex
	hbFn func(raft.RPC) // the group's heartbeat fast path
	// hbStatus is the member's fence status (see fence.status), which its
	// heartbeat answers carry.
	hbStatus func() byte

	pipesMu sync.Mutex
	pipes   map[*pipeEnd]struct{} // open in-memory streams to itself (see pipe)
}

var _ raft.StreamLayer = (*Layer)(nil)

func (l *Layer) deliver(c net.Conn) bool {
	select {
	case l.accept <- c:
		return true
	case <-l.done:
		return false
	case <-time.After(10 * time.Second):
		// The group is not accepting (it is shutting down or stuck); the
		// peer's transport will retry.
		return false
	}
}

// Accept implements net.Listener.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	}
}

// Close implements net.Listener: the group stops accepting streams.
func (l *Layer) Close() error {
	l.mux.mu.Lock()
	if l.mux.layers[l.group] == l {
		delete(l.mux.layers, l.group)
	}
	l.mux.mu.Unlock()
	l.shut()
	return nil
}

func (l *Layer) shut() {
	l.once.Do(func() {
		l.pipesMu.Lock()
		close(l.done)
		pipes := l.pipes
		l.pipes = nil
		l.pipesMu.Unlock()
		for c := range pipes {
			c.Conn.Close() // the other end, the group's, sees it closed
		}
		for {
			select {
			case c := <-l.accept:
				c.Close()
			default:
				return
			}
		}
	})
}

// Addr implements net.Listener.
func (l *Layer) Addr() net.Addr { return addr(l.mux.self) }

// Dial implements raft.StreamLayer: a new stream to the same group on the
// broker at address. A stream to this broker itself (which Raft never
// opens; see Transport.Campaign) is an in-memory pipe.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if address == l.mux.self {
		return l.pipe()
	}
	return l.mux.openStream(address, l.group, timeout)
}

// openStream opens a stream to group on the broker at addr, over the
// session to it, and sends the group header.
func (m *Mux) openStream(addr raft.ServerAddress, group string, timeout time.Duration) (net.Conn, error) {
	s, err := m.session(addr, timeout)
	if err != nil {
		return nil, err
	}
	ys, err := s.OpenStream()
	if err != nil {
		m.stopReads(s)
		s.Close() // a broken session is redialled next time
		return nil, fmt.Errorf("raftmux: stream of group %q to %s: %w", group, addr, err)
	}
	st := m.track(ys)
	if _, err := st.Write(append([]byte{byte(len(group))}, group...)); err != nil {
		st.Close()
		return nil, fmt.Errorf("raftmux: header of a stream of group %q to %s: %w", group, addr, err)
	}
	return st, nil
}

// pipe returns one end of an in-memory stream whose other end the group
// accepts; it is closed when the layer is, if not before.
func (l *Layer) pipe() (net.Conn, error) {
	local, remote := net.Pipe()
	end := &pipeEnd{Conn: local, l: l}
	l.pipesMu.Lock()
	defer l.pipesMu.Unlock()
	select {
	case <-l.done:
		return nil, ErrClosed
	case l.accept <- remote:
		if l.pipes == nil {
			l.pipes = make(map[*pipeEnd]struct{})
		}
		l.pipes[end] = struct{}{}
		return end, nil
	default:
		return nil, fmt.Errorf("raftmux: group %s is not accepting streams", l.group)
	}
}

// pipeEnd is the dialling end of a pipe; closing it closes the pipe.
type pipeEnd struct {
	net.Conn
	l *Layer
}

func (c *pipeEnd) Close() error {
	c.l.pipesMu.Lock()
	delete(c.l.pipes, c)
	c.l.pipesMu.Unlock()
	return c.Conn.Close()
}

type addr raft.ServerAddress

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

// IsRaft peeks at the first bytes of a new connection and reports whether it
// is a Raft session. The returned conn replays whatever was peeked, so a
// Kafka connection can be served as if nothing had been read; for a Raft
// session the magic is consumed.
func IsRaft(nc net.Conn, timeout time.Duration) (bool, net.Conn, error) {
	br := bufio.NewReaderSize(nc, 64)
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	head, err := br.Peek(len(Magic))
	_ = nc.SetReadDeadline(time.Time{})
	if err != nil {
		return false, nil, fmt.Errorf("raftmux: reading the first bytes: %w", err)
	}
	pc := &peekedConn{Conn: nc, r: br}
	if binary.BigEndian.Uint32(head) == binary.BigEndian.Uint32(Magic[:]) {
		_, _ = br.Discard(len(Magic))
		return true, pc, nil
	}
	return false, pc, nil
}

// peekedConn reads through the buffer that holds the peeked bytes.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// trackedStream is a stream the Mux knows of until it is closed.
type trackedStream struct {
	*yamux.Stream
	m    *Mux
	once sync.Once
}

// sessionStreams are the open streams of one session.
type sessionStreams struct {
	open    map[*yamux.Stream]struct{}
	stopped bool // reads end at once (see stopReads)
}

// pastDeadline is a read deadline that has passed.
var pastDeadline = time.Unix(1, 0)

// track registers st with m until the returned conn is closed.
func (m *Mux) track(st *yamux.Stream) net.Conn {
	m.streamsMu.Lock()
	ss := m.streams[st.Session()]
	if ss == nil {
		ss = &sessionStreams{open: make(map[*yamux.Stream]struct{})}
		m.streams[st.Session()] = ss
	}
	ss.open[st] = struct{}{}
	if ss.stopped {
		_ = st.SetReadDeadline(pastDeadline)
	}
	m.streamsMu.Unlock()
	return &trackedStream{Stream: st, m: m}
}

func (t *trackedStream) Close() error {
	t.once.Do(func() {
		t.m.streamsMu.Lock()
		if ss := t.m.streams[t.Session()]; ss != nil {
			delete(ss.open, t.Stream)
			if len(ss.open) == 0 && ss.stopped {
				delete(t.m.streams, t.Session())
			}
		}
		t.m.streamsMu.Unlock()
	})
	return t.Stream.Close()
}

// stopReads fails every read of the open streams of session s (of every
// session if s is nil), now and later, by a deadline in the past. yamux
// (v0.1.2) signals a session's shutdown before it closes the session's
// streams, and in between a stream's reader loops on the closed shutdown
// channel without yielding; a broker of thousands of Raft groups has
// thousands of readers, and their spinning starved the broker of CPU for
// tens of seconds whenever a session ended (a peer stopping, a cut), and
// kept the sessions from closing. A reader with a past deadline returns at
// once instead. It is called before yamux shuts a session down where the
// mux can tell (its own Close, a failed read of the connection, a stream
// that cannot be opened), and otherwise as soon as the shutdown is seen.
func (m *Mux) stopReads(s *yamux.Session) {
	m.streamsMu.Lock()
	defer m.streamsMu.Unlock()
	for sess, ss := range m.streams {
		if (s != nil && sess != s) || ss.stopped {
			continue
		}
		ss.stopped = true
		for st := range ss.open {
			_ = st.SetReadDeadline(pastDeadline)
		}
		if len(ss.open) == 0 {
			delete(m.streams, sess)
		}
	}
}
