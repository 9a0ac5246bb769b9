package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftlog"
)

// A partition's snapshot on disk is its FSM state only (offsets, entry
// locations, producers, epochs): the batches stay in the Raft log. A
// replica so far behind that the leader has deleted the entries it lacks
// needs the batches too, so a snapshot sent to a follower carries, after
// the state, every Raft entry the state refers to. The receiving replica
// stages those entries and moves them into its log once the snapshot is
// final; the entries below them are gone from the leader and are dropped.
//
// Stream frames: kind (1 byte), length (uint32), payload.
const (
	frameState    byte = 1 // the FSM state, JSON
	frameTransfer byte = 2 // opens a transfer: first entry index, snapshot index
	frameEntry    byte = 3 // one Raft entry as raftlog stores it

	frameHeader = 5
	// transferPayload: first entry index and snapshot index, uint64 each.
	transferPayload = 16
	// maxFrame bounds one frame: an entry holds at most a few MiB.
	maxFrame = 256 << 20
	// stageChunk bounds the entries a receiving sink buffers.
	stageChunk = 4 << 20
)

// errSnapshotStale: entries a snapshot refers to are no longer stored.
var errSnapshotStale = errors.New("partition: snapshot refers to deleted entries")

func appendFrame(b []byte, kind byte, payload []byte) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// snapshotStore wraps the group's snapshot store.
type snapshotStore struct {
	raft.SnapshotStore
	logs *raftlog.Store
	// serving is set once Raft runs: before, Open serves the restore at
	// start-up, which needs the state only.
	serving atomic.Bool

	mu      sync.Mutex
	sending map[*entryStream]uint64 // transfers under way, by first entry
}

// keepFrom bounds what retention may delete: the entries of transfers
// under way stay until they are sent.
func (s *snapshotStore) keepFrom(keep uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, first := range s.sending {
		keep = min(keep, first)
	}
	return keep
}

// Create implements raft.SnapshotStore.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, cfg raft.Configuration, cfgIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	inner, err := s.SnapshotStore.Create(version, index, term, cfg, cfgIndex, trans)
	if err != nil {
		return nil, err
	}
	return &snapshotSink{SnapshotSink: inner, logs: s.logs}, nil
}

// Open implements raft.SnapshotStore: once Raft runs, the stream carries
// the entries the state refers to (a restore reads the state and stops).
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil || !s.serving.Load() {
		return meta, rc, err
	}
	defer rc.Close()
	state, err := io.ReadAll(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("partition: reading snapshot %s: %w", id, err)
	}
	st, err := decodeState(bytes.NewReader(state))
	if err != nil {
		return nil, nil, err
	}
	first := meta.Index + 1
	if len(st.Entries) > 0 {
		first = st.Entries[0].Index
	}
	head := appendFrame(nil, frameTransfer, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, first), meta.Index))
	if len(state) > 0 && state[0] != frameState { // a snapshot from before frames
		state = appendFrame(nil, frameState, state)
	}
	head = append(head, state...)
	sizes := make([]int, 0, meta.Index+1-first)
	total := int64(len(head))
	for i := first; i <= meta.Index; i++ {
		v, err := s.logs.Raw(i)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: entry %d: %w", errSnapshotStale, i, err)
		}
		sizes = append(sizes, len(v))
		total += frameHeader + int64(len(v))
	}
	m := *meta
	m.Size = total
	es := &entryStream{head: head, logs: s.logs, next: first, sizes: sizes, store: s}
	s.mu.Lock()
	if s.sending == nil {
		s.sending = make(map[*entryStream]uint64)
	}
	s.sending[es] = first
	s.mu.Unlock()
	return &m, es, nil
}

// entryStream reads a transfer: the head, then the entries, read as it
// goes.
type entryStream struct {
	store *snapshotStore
	head  []byte
	logs  *raftlog.Store
	next  uint64
	sizes []int
	cur   []byte
}

func (r *entryStream) Read(p []byte) (int, error) {
	for len(r.head) == 0 && len(r.cur) == 0 {
		if len(r.sizes) == 0 {
			return 0, io.EOF
		}
		v, err := r.logs.Raw(r.next)
		if err != nil {
			return 0, fmt.Errorf("%w: entry %d: %w", errSnapshotStale, r.next, err)
		}
		if len(v) != r.sizes[0] {
			// Compaction rewrote it since the size was taken; the
			// transfer is retried with a fresh Open.
			return 0, fmt.Errorf("%w: entry %d changed during the transfer", errSnapshotStale, r.next)
		}
		r.cur = appendFrame(make([]byte, 0, frameHeader+len(v)), frameEntry, v)
		r.next++
		r.sizes = r.sizes[1:]
	}
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (r *entryStream) Close() error {
	r.store.mu.Lock()
	delete(r.store.sending, r)
	r.store.mu.Unlock()
	return nil
}

// snapshotSink writes a local snapshot through, and splits a received
// transfer into the state (to the inner sink) and entries (staged).
type snapshotSink struct {
	raft.SnapshotSink
	logs *raftlog.Store

	started  bool
	transfer bool
	first    uint64
	buf      []byte
	staged   [][]byte
	stagedN  int
	err      error
}

func (s *snapshotSink) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if !s.started {
		s.started = true
		s.transfer = len(p) > 0 && p[0] == frameTransfer
		if s.transfer {
			if err := s.logs.DropStaged(); err != nil { // left by an earlier transfer
				s.err = err
				return 0, err
			}
		}
	}
	if !s.transfer {
		return s.SnapshotSink.Write(p)
	}
	s.buf = append(s.buf, p...)
	for len(s.buf) >= frameHeader {
		kind, n := s.buf[0], binary.BigEndian.Uint32(s.buf[1:])
		if n > maxFrame {
			s.err = fmt.Errorf("%w: snapshot frame of %d bytes", ErrStorage, n)
			return 0, s.err
		}
		if len(s.buf) < frameHeader+int(n) {
			break
		}
		frame, payload := s.buf[:frameHeader+int(n)], s.buf[frameHeader:frameHeader+int(n)]
		switch kind {
		case frameTransfer:
			if len(payload) != transferPayload {
				s.err = fmt.Errorf("%w: transfer frame of %d bytes", ErrStorage, len(payload))
				return 0, s.err
			}
			s.first = binary.BigEndian.Uint64(payload)
		case frameState:
			if _, err := s.SnapshotSink.Write(frame); err != nil {
				s.err = err
				return 0, err
			}
		case frameEntry:
			s.staged = append(s.staged, append([]byte(nil), payload...))
			s.stagedN += len(payload)
			if s.stagedN >= stageChunk {
				if err := s.stage(); err != nil {
					return 0, err
				}
			}
		default:
			s.err = fmt.Errorf("%w: snapshot frame of kind %d", ErrStorage, kind)
			return 0, s.err
		}
		s.buf = s.buf[len(frame):]
	}
	if len(s.buf) == 0 {
		s.buf = nil // do not pin a large array
	}
	return len(p), nil
}

func (s *snapshotSink) stage() error {
	if err := s.logs.Stage(s.staged); err != nil {
		s.err = err
		return err
	}
	s.staged, s.stagedN = nil, 0
	return nil
}

// Close implements raft.SnapshotSink: a received snapshot becomes final,
// then its entries replace the log below it.
func (s *snapshotSink) Close() error {
	if s.err == nil && s.transfer && len(s.buf) > 0 {
		s.err = fmt.Errorf("%w: snapshot ends inside a frame", ErrStorage)
	}
	if s.err == nil && s.transfer {
		_ = s.stage()
	}
	if s.err != nil {
		_ = s.SnapshotSink.Cancel()
		return s.err
	}
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	if !s.transfer {
		return nil
	}
	return s.logs.Promote(s.first)
}

// Cancel implements raft.SnapshotSink.
func (s *snapshotSink) Cancel() error {
	if s.transfer {
		_ = s.logs.DropStaged()
	}
	return s.SnapshotSink.Cancel()
}

// recoverStaged finishes or discards a transfer that a crash interrupted:
// staged entries belong to the latest snapshot if it ends where they end.
func recoverStaged(logs *raftlog.Store, snaps raft.SnapshotStore) error {
	first, last, ok, err := logs.StagedBounds()
	if err != nil || !ok {
		return err
	}
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("partition: listing snapshots: %w", err)
	}
	if len(list) > 0 && list[0].Index == last {
		return logs.Promote(first)
	}
	return logs.DropStaged()
}
