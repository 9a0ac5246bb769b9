package raftmux

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Heartbeats of every Raft group bound for one broker travel together: a
// leader's heartbeat waits up to a window for the heartbeats of other
// groups, and the batch goes out as one frame on one stream per peer. The
// peer hands each heartbeat to its group's fast-path handler and answers
// the batch with one frame. Idle, a broker then sends a few frames a second
// per peer instead of several per group, follower and second.

// hbGroup names the heartbeat stream of a session; Layer refuses it.
const hbGroup = "\x00heartbeats"

const (
	// maxHBFrame bounds a heartbeat frame (a batch of several thousand
	// groups fits).
	maxHBFrame = 4 << 20
	// hbUnknown answers a heartbeat for a group the peer does not run;
	// hbLost is an answer of a member that lost its state and has not
	// caught up with a leader since, hbCatchingUp one of a member that
	// started without state and has not caught up (see Transport.Fence).
	hbOK, hbUnknown, hbLost, hbCatchingUp = 0, 1, 2, 3
)

// ErrHeartbeat is a heartbeat that got no answer.
var ErrHeartbeat = errors.New("raftmux: heartbeat failed")

// isHeartbeat is hashicorp/raft's own test for a heartbeat.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leader := req.Addr
	if len(leader) == 0 {
		//lint:ignore SA1019 hashicorp/raft still fills and reads Leader, for older peers
		leader = req.Leader
	}
	return req.Term != 0 && leader != nil && req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

type hbCall struct {
	group  string
	req    *raft.AppendEntriesRequest
	resp   *raft.AppendEntriesResponse
	status byte       // set before done: the member's fence status
	done   chan error // buffered: the deliverer never blocks
}

// hbPeer gathers the heartbeats bound for one broker.
type hbPeer struct {
	mux  *Mux
	addr raft.ServerAddress

	mu       sync.Mutex
	closed   bool
	pending  []*hbCall
	armed    bool // a flush is scheduled
	timer    *time.Timer
	stream   net.Conn
	nextID   uint64
	inflight map[uint64][]*hbCall

	// Liveness (see WatchPeers).
	watched    bool
	known      bool // up or down has been decided since the watch began
	up         bool
	upCh       chan struct{} // closed when the peer comes up
	changed    func()
	lastAnswer time.Time
	recheck    chan struct{}
}

// heartbeat sends req to group on the broker at addr with the next batch
// and waits for its answer and the member's fence status.
func (m *Mux) heartbeat(addr raft.ServerAddress, group string, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (status byte, err error) {
	p, err := m.hbPeer(addr)
	if err != nil {
		return hbOK, err
	}
	call := &hbCall{group: group, req: req, resp: resp, done: make(chan error, 1)}
	p.enqueue(call)
	// Every call is answered: a batch is sent within the window, and one
	// without an answer after the timeout fails with its stream.
	err = <-call.done
	return call.status, err
}

func (m *Mux) hbPeer(addr raft.ServerAddress) (*hbPeer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	p := m.hbPeers[addr]
	if p == nil {
		p = &hbPeer{mux: m, addr: addr, inflight: make(map[uint64][]*hbCall), recheck: make(chan struct{}, 1)}
		m.hbPeers[addr] = p
	}
	return p, nil
}

func (p *hbPeer) enqueue(c *hbCall) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.done <- ErrClosed
		return
	}
	p.pending = append(p.pending, c)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.mux.hb.Window, p.flush)
		} else {
			p.timer.Reset(p.mux.hb.Window)
		}
	}
}

// flush sends the pending batch. It runs on the timer's goroutine.
func (p *hbPeer) flush() {
	p.mu.Lock()
	batch := p.pending
	p.pending = nil
	p.armed = false
	if p.closed || len(batch) == 0 {
		p.mu.Unlock()
		failAll(batch, ErrClosed)
		return
	}
	p.nextID++
	id := p.nextID
	p.inflight[id] = batch
	st := p.stream
	p.mu.Unlock()
	_ = p.send(id, st, batch)
}

// send writes batch id, already waiting in inflight, on st or on a new
// stream if st is nil; a batch that cannot be sent fails.
func (p *hbPeer) send(id uint64, st net.Conn, batch []*hbCall) error {
	if st == nil {
		var err error
		if st, err = p.open(); err != nil {
			p.fail(id, err)
			return err
		}
	}
	frame := encodeHBRequests(id, batch)
	_ = st.SetWriteDeadline(time.Now().Add(p.mux.hb.Timeout))
	if _, err := st.Write(frame); err != nil {
		p.drop(st, fmt.Errorf("%w: writing to %s: %w", ErrHeartbeat, p.addr, err))
		p.fail(id, err)
		return err
	}
	time.AfterFunc(p.mux.hb.Timeout, func() { p.expire(st, id) })
	return nil
}

// expire drops st if batch id is still unanswered on it: the peer (or the
// path to it) is stuck, and later batches should not queue behind it.
func (p *hbPeer) expire(st net.Conn, id uint64) {
	p.mu.Lock()
	_, waiting := p.inflight[id]
	p.mu.Unlock()
	if waiting {
		p.drop(st, fmt.Errorf("%w: no answer from %s within %v", ErrHeartbeat, p.addr, p.mux.hb.Timeout))
	}
}

// open dials the heartbeat stream and starts its reader.
func (p *hbPeer) open() (net.Conn, error) {
	st, err := p.mux.openStream(p.addr, hbGroup, p.mux.hb.Timeout)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		st.Close()
		return nil, ErrClosed
	}
	if p.stream != nil { // another flush opened one first
		old := p.stream
		p.mu.Unlock()
		st.Close()
		return old, nil
	}
	p.stream = st
	p.mu.Unlock()
	if !p.mux.goFunc(func() { p.read(st) }) {
		st.Close()
		return nil, ErrClosed
	}
	return st, nil
}

// read delivers the answers arriving on st until it breaks.
func (p *hbPeer) read(st net.Conn) {
	br := bufio.NewReader(st)
	for {
		payload, err := readFrame(br)
		if err != nil {
			p.drop(st, fmt.Errorf("%w: reading from %s: %w", ErrHeartbeat, p.addr, err))
			return
		}
		id, answers, err := decodeHBResponses(payload)
		if err != nil {
			p.drop(st, err)
			return
		}
		p.answered()
		p.mu.Lock()
		batch := p.inflight[id]
		delete(p.inflight, id)
		p.mu.Unlock()
		if len(batch) != len(answers) {
			failAll(batch, fmt.Errorf("%w: %s answered %d of %d heartbeats", ErrHeartbeat, p.addr, len(answers), len(batch)))
			continue
		}
		for i, c := range batch {
			a := answers[i]
			if a.status == hbUnknown || a.status > hbCatchingUp {
				c.done <- fmt.Errorf("%w: %s does not run group %q", ErrUnknownGroup, p.addr, c.group)
				continue
			}
			*c.resp = a.resp
			c.status = a.status
			c.done <- nil
		}
	}
}

// drop closes st, if it is still the current stream, and fails every
// batch waiting for an answer on it.
func (p *hbPeer) drop(st net.Conn, err error) {
	p.mu.Lock()
	if p.stream != st {
		p.mu.Unlock()
		return
	}
	p.stream = nil
	inflight := p.inflight
	p.inflight = make(map[uint64][]*hbCall)
	watched := p.watched && !p.closed
	p.mu.Unlock()
	st.Close()
	for _, b := range inflight {
		failAll(b, err)
	}
	if watched {
		p.lost()
	}
}

// fail fails one batch that never went out.
func (p *hbPeer) fail(id uint64, err error) {
	p.mu.Lock()
	batch := p.inflight[id]
	delete(p.inflight, id)
	p.mu.Unlock()
	failAll(batch, err)
}

func (p *hbPeer) close() {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	pending := p.pending
	p.pending = nil
	st := p.stream
	p.mu.Unlock()
	failAll(pending, ErrClosed)
	if st != nil {
		p.drop(st, ErrClosed)
	}
}

func failAll(batch []*hbCall, err error) {
	for _, c := range batch {
		c.done <- err
	}
}

// serveHeartbeats answers the heartbeat batches arriving on st.
func (m *Mux) serveHeartbeats(st net.Conn) {
	defer st.Close()
	br := bufio.NewReader(st)
	for {
		payload, err := readFrame(br)
		if err != nil {
			return
		}
		id, calls, err := decodeHBRequests(payload)
		if err != nil {
			m.log.Debug().Err(err).Msg("bad heartbeat batch")
			return
		}
		m.hbFrames.Add(1)
		m.hbDelivered.Add(int64(len(calls)))
		answers := make([]hbAnswer, len(calls))
		for i, c := range calls {
			answers[i] = m.deliverHeartbeat(c.group, c.req)
		}
		if _, err := st.Write(encodeHBResponses(id, answers)); err != nil {
			return
		}
	}
}

// deliverHeartbeat runs one heartbeat through its group's fast path.
func (m *Mux) deliverHeartbeat(group string, req *raft.AppendEntriesRequest) hbAnswer {
	m.mu.Lock()
	l := m.layers[group]
	m.mu.Unlock()
	if l == nil {
		return hbAnswer{status: hbUnknown}
	}
	l.hbMu.Lock()
	fn, status := l.hbFn, l.hbStatus
	l.hbMu.Unlock()
	if fn == nil {
		return hbAnswer{status: hbUnknown}
	}
	respCh := make(chan raft.RPCResponse, 1)
	fn(raft.RPC{Command: req, RespChan: respCh})
	select {
	case r := <-respCh:
		resp, ok := r.Response.(*raft.AppendEntriesResponse)
		if r.Error != nil || !ok {
			return hbAnswer{status: hbUnknown}
		}
		if status != nil {
			return hbAnswer{status: status(), resp: *resp}
		}
		return hbAnswer{resp: *resp}
	default:
		// The group is shutting down and ignored the heartbeat.
		return hbAnswer{status: hbUnknown}
	}
}

// Frames: int32 size, then the payload. A request payload is the batch ID
// (uint64), a count (uint32) and per heartbeat: group, protocol version,
// ID, Addr, Term, Leader. An answer payload is the batch ID, a count and
// per heartbeat: status, protocol version, ID, Addr, Term, LastLog,
// Success, NoRetryBackoff. Strings are uint16-length-prefixed.

func readFrame(br *bufio.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(br, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > maxHBFrame {
		return nil, fmt.Errorf("%w: heartbeat frame of %d bytes", ErrBadHeader, n)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return nil, err
	}
	return payload, nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendHeader(b []byte, h raft.RPCHeader) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(h.ProtocolVersion))
	b = appendBytes(b, h.ID)
	return appendBytes(b, h.Addr)
}

func beginFrame(id uint64, n int) []byte {
	b := make([]byte, 4, 64+n*64)
	b = binary.BigEndian.AppendUint64(b, id)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func endFrame(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func encodeHBRequests(id uint64, batch []*hbCall) []byte {
	b := beginFrame(id, len(batch))
	for _, c := range batch {
		b = appendBytes(b, []byte(c.group))
		b = appendHeader(b, c.req.RPCHeader)
		b = binary.BigEndian.AppendUint64(b, c.req.Term)
		//lint:ignore SA1019 carried as hashicorp/raft carries it, for older peers
		b = appendBytes(b, c.req.Leader)
	}
	return endFrame(b)
}

type hbAnswer struct {
	status byte
	resp   raft.AppendEntriesResponse
}

func encodeHBResponses(id uint64, answers []hbAnswer) []byte {
	b := beginFrame(id, len(answers))
	for _, a := range answers {
		b = append(b, a.status)
		b = appendHeader(b, a.resp.RPCHeader)
		b = binary.BigEndian.AppendUint64(b, a.resp.Term)
		b = binary.BigEndian.AppendUint64(b, a.resp.LastLog)
		b = append(b, boolByte(a.resp.Success), boolByte(a.resp.NoRetryBackoff))
	}
	return endFrame(b)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// decoder reads a payload; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated heartbeat frame", ErrBadHeader)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) bytes() []byte {
	v := d.take(2)
	if v == nil {
		return nil
	}
	s := d.take(int(binary.BigEndian.Uint16(v)))
	if len(s) == 0 {
		return nil
	}
	return s
}

func (d *decoder) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(d.u32()), ID: d.bytes(), Addr: d.bytes()}
}

// count reads a count of items of at least min bytes each, refusing one
// the payload cannot hold.
func (d *decoder) count(min int) int {
	n := d.u32()
	if d.err == nil && uint64(n)*uint64(min) > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: heartbeat frame claims %d items", ErrBadHeader, n)
	}
	return int(n)
}

type hbRequest struct {
	group string
	req   *raft.AppendEntriesRequest
}

func decodeHBRequests(payload []byte) (uint64, []hbRequest, error) {
	d := &decoder{b: payload}
	id := d.u64()
	n := d.count(2 + 4 + 2 + 2 + 8 + 2)
	var out []hbRequest
	for i := 0; i < n && d.err == nil; i++ {
		group := string(d.bytes())
		//lint:ignore SA1019 carried as hashicorp/raft carries it, for older peers
		req := &raft.AppendEntriesRequest{RPCHeader: d.header(), Term: d.u64(), Leader: d.bytes()}
		out = append(out, hbRequest{group: group, req: req})
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes in a heartbeat frame", ErrBadHeader, len(d.b))
	}
	return id, out, d.err
}

func decodeHBResponses(payload []byte) (uint64, []hbAnswer, error) {
	d := &decoder{b: payload}
	id := d.u64()
	n := d.count(1 + 4 + 2 + 2 + 8 + 8 + 2)
	var out []hbAnswer
	for i := 0; i < n && d.err == nil; i++ {
		a := hbAnswer{status: d.u8()}
		a.resp.RPCHeader = d.header()
		a.resp.Term = d.u64()
		a.resp.LastLog = d.u64()
		a.resp.Success = d.u8() == 1
		a.resp.NoRetryBackoff = d.u8() == 1
		out = append(out, a)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes in a heartbeat frame", ErrBadHeader, len(d.b))
	}
	return id, out, d.err
}
