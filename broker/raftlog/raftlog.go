// Package raftlog keeps Raft groups' logs and stable state in the broker's
// storage.Store. Every group's appends go through the store's group
// committer, so many groups share one fsync instead of syncing each on its
// own.
package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/storage"
)

// ErrNotFound is what hashicorp/raft expects, by its text, from a stable
// store that lacks a key.
var ErrNotFound = errors.New("not found")

// ErrCorrupt reports a stored entry that does not decode.
var ErrCorrupt = errors.New("raftlog: corrupt log entry")

// deleteChunk bounds the keys deleted in one write.
const deleteChunk = 4096

// Store is the LogStore and StableStore of one Raft group.
type Store struct {
	s           storage.Store
	group       string
	logPrefix   []byte
	kvPrefix    []byte
	stagePrefix []byte
	// data marks a partition's log: its entries count against the
	// store's free-space reserve (see CountsAsData).
	data atomic.Bool

	mu          sync.Mutex
	first, last uint64 // 0, 0 when empty
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// CountsAsData makes the group's entries partition data: StoreLogs asks
// the store for room first and fails with storage.ErrDiskFull, storing
// nothing, when the disk is below its reserve. The metadata group's
// entries, and every group's terms and votes, are always stored.
func (st *Store) CountsAsData() { st.data.Store(true) }

// Open returns the store of the group named group, reading its bounds.
func Open(s storage.Store, group string) (*Store, error) {
	base := append([]byte("raft/"), group...)
	base = append(base, 0)
	st := &Store{
		s:         s,
		group:     group,
		logPrefix: append(append([]byte(nil), base...), 'l'),
		kvPrefix:  append(append([]byte(nil), base...), 's'),
		// Entries received with a snapshot wait here until the snapshot
		// is final.
		stagePrefix: append(append([]byte(nil), base...), 'x'),
	}
	first, last, ok, err := s.KeyBounds(st.logPrefix)
	if err != nil {
		return nil, fmt.Errorf("raftlog: opening %s: %w", group, err)
	}
	if ok {
		if st.first, err = indexIn(st.logPrefix, first); err != nil {
			return nil, err
		}
		if st.last, err = indexIn(st.logPrefix, last); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (st *Store) logKey(index uint64) []byte { return keyAt(st.logPrefix, index) }

// keyAt is the key of an index under prefix (the log or the staged entries).
func keyAt(prefix []byte, index uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), index)
}

// indexIn is the index of a key under prefix.
func indexIn(prefix, key []byte) (uint64, error) {
	if len(key) != len(prefix)+8 {
		return 0, fmt.Errorf("%w: key of %d bytes", ErrCorrupt, len(key))
	}
	return binary.BigEndian.Uint64(key[len(prefix):]), nil
}

// deletePrefix deletes every key under prefix; what names them in errors.
func (st *Store) deletePrefix(prefix []byte, what string) error {
	var kvs []storage.KV
	err := st.s.Range(prefix, func(k, _ []byte) bool {
		kvs = append(kvs, storage.KV{Key: append([]byte(nil), k...)})
		return true
	})
	if err != nil {
		return fmt.Errorf("raftlog: listing %s: %w", what, err)
	}
	if len(kvs) == 0 {
		return nil
	}
	if err := storage.WriteKVs(st.s, kvs...); err != nil {
		return fmt.Errorf("raftlog: dropping %s: %w", what, err)
	}
	return nil
}

// FirstIndex implements raft.LogStore.
func (st *Store) FirstIndex() (uint64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.first, nil
}

// LastIndex implements raft.LogStore.
func (st *Store) LastIndex() (uint64, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.last, nil
}

// GetLog implements raft.LogStore.
func (st *Store) GetLog(index uint64, l *raft.Log) error {
	v, err := st.s.Get(st.logKey(index))
	if errors.Is(err, storage.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftlog: reading entry %d: %w", index, err)
	}
	return decodeLog(v, l)
}

// StoreLog implements raft.LogStore.
func (st *Store) StoreLog(l *raft.Log) error { return st.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore: the entries are durable when it
// returns, synced together with whatever else the broker wrote meanwhile.
func (st *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	kvs := make([]storage.KV, len(logs))
	size := 0
	for i, l := range logs {
		kvs[i] = storage.KV{Key: st.logKey(l.Index), Value: encodeLog(l)}
		size += len(kvs[i].Value)
	}
	if st.data.Load() {
		if err := st.s.Reserve(size); err != nil {
			return fmt.Errorf("raftlog: storing entries %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
		}
	}
	if err := storage.WriteKVs(st.s, kvs...); err != nil {
		return fmt.Errorf("raftlog: storing entries %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	st.mu.Lock()
	if st.first == 0 || logs[0].Index < st.first {
		st.first = logs[0].Index
	}
	if last := logs[len(logs)-1].Index; last > st.last {
		st.last = last
	}
	st.mu.Unlock()
	return nil
}

// DeleteRange implements raft.LogStore.
func (st *Store) DeleteRange(from, to uint64) error {
	st.mu.Lock()
	lo, hi := max(from, st.first), min(to, st.last)
	st.mu.Unlock()
	for from := lo; from <= hi && from != 0; {
		to := min(hi, from+deleteChunk-1)
		kvs := make([]storage.KV, 0, to-from+1)
		for i := from; i <= to; i++ {
			kvs = append(kvs, storage.KV{Key: st.logKey(i)})
		}
		if err := storage.WriteKVs(st.s, kvs...); err != nil {
			return fmt.Errorf("raftlog: deleting entries %d-%d: %w", from, to, err)
		}
		if to == ^uint64(0) {
			break
		}
		from = to + 1
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case from <= st.first && to >= st.last:
		st.first, st.last = 0, 0
	case from <= st.first:
		st.first = to + 1
	case to >= st.last:
		st.last = from - 1
	}
	return nil
}

// Set implements raft.StableStore.
func (st *Store) Set(key, val []byte) error {
	if err := storage.WriteKVs(st.s, storage.KV{Key: st.kvKey(key), Value: append([]byte{}, val...)}); err != nil {
		return fmt.Errorf("raftlog: setting %q: %w", key, err)
	}
	return nil
}

// Get implements raft.StableStore.
func (st *Store) Get(key []byte) ([]byte, error) {
	v, err := st.s.Get(st.kvKey(key))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftlog: getting %q: %w", key, err)
	}
	return v, nil
}

// keyCatchUp is set in a group's stable state while its member here must
// catch up before it votes or leads (raftmux.Transport.Fence), so that the
// fence outlives a restart.
var keyCatchUp = []byte("CatchUp")

// CatchingUp reports whether the member must still catch up (see
// SetCatchingUp).
func (st *Store) CatchingUp() (bool, error) {
	_, err := st.Get(keyCatchUp)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// SetCatchingUp records, durably, whether the member must still catch up.
func (st *Store) SetCatchingUp(on bool) error {
	kv := storage.KV{Key: st.kvKey(keyCatchUp)} // nil deletes
	if on {
		kv.Value = []byte{1}
	}
	if err := storage.WriteKVs(st.s, kv); err != nil {
		return fmt.Errorf("raftlog: recording the catch-up: %w", err)
	}
	return nil
}

// SetUint64 implements raft.StableStore.
func (st *Store) SetUint64(key []byte, val uint64) error {
	return st.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore.
func (st *Store) GetUint64(key []byte) (uint64, error) {
	v, err := st.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %q holds %d bytes, not a uint64", ErrCorrupt, key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (st *Store) kvKey(key []byte) []byte {
	return append(append([]byte(nil), st.kvPrefix...), key...)
}

// Entry encoding: index, term, type, appended-at (unix nanoseconds), then
// data and extensions, each with a uvarint length.
func encodeLog(l *raft.Log) []byte {
	b := make([]byte, 0, 8+8+1+8+2*binary.MaxVarintLen32+len(l.Data)+len(l.Extensions))
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.AppendUvarint(b, uint64(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.AppendUvarint(b, uint64(len(l.Extensions)))
	return append(b, l.Extensions...)
}

func decodeLog(b []byte, l *raft.Log) error {
	if len(b) < 25 {
		return fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	l.Index = binary.BigEndian.Uint64(b)
	l.Term = binary.BigEndian.Uint64(b[8:])
	l.Type = raft.LogType(b[16])
	l.AppendedAt = time.Time{}
	if at := int64(binary.BigEndian.Uint64(b[17:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	rest := b[25:]
	var err error
	if l.Data, rest, err = chunk(rest); err != nil {
		return err
	}
	if l.Extensions, rest, err = chunk(rest); err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(rest))
	}
	return nil
}

func chunk(b []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	if n == 0 {
		return nil, b[k:], nil
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// Drop deletes the group's whole log and stable state.
func (st *Store) Drop() error {
	if err := st.DeleteRange(0, ^uint64(0)); err != nil {
		return err
	}
	if err := st.DropStaged(); err != nil {
		return err
	}
	return st.deletePrefix(st.kvPrefix, "stable keys")
}

// Rewrite replaces the data of a stored entry, keeping its index, term and
// type: log compaction of a partition rewrites its committed entries in
// place. It must not be used on entries that Raft may still truncate.
func (st *Store) Rewrite(index uint64, data []byte) error {
	var l raft.Log
	if err := st.GetLog(index, &l); err != nil {
		return err
	}
	l.Data = data
	if err := storage.WriteKVs(st.s, storage.KV{Key: st.logKey(index), Value: encodeLog(&l)}); err != nil {
		return fmt.Errorf("raftlog: rewriting entry %d: %w", index, err)
	}
	return nil
}

// Raw returns the stored form of an entry, as Stage takes it: snapshot
// transfers carry entries in it.
func (st *Store) Raw(index uint64) ([]byte, error) {
	v, err := st.s.Get(st.logKey(index))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, raft.ErrLogNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftlog: reading entry %d: %w", index, err)
	}
	return v, nil
}

// Stage keeps entries in the form Raw returns apart from the log, until
// Promote moves them in or DropStaged discards them: a snapshot transfer
// must not touch the log before the snapshot it belongs to is final.
func (st *Store) Stage(entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	kvs := make([]storage.KV, len(entries))
	var l raft.Log
	for i, v := range entries {
		if err := decodeLog(v, &l); err != nil {
			return err
		}
		kvs[i] = storage.KV{Key: keyAt(st.stagePrefix, l.Index), Value: v}
	}
	if err := storage.WriteKVs(st.s, kvs...); err != nil {
		return fmt.Errorf("raftlog: staging entries: %w", err)
	}
	return nil
}

// StagedBounds reports the lowest and highest staged index.
func (st *Store) StagedBounds() (first, last uint64, ok bool, err error) {
	lo, hi, ok, err := st.s.KeyBounds(st.stagePrefix)
	if err != nil || !ok {
		return 0, 0, false, err
	}
	if first, err = indexIn(st.stagePrefix, lo); err != nil {
		return 0, 0, false, err
	}
	if last, err = indexIn(st.stagePrefix, hi); err != nil {
		return 0, 0, false, err
	}
	return first, last, true, nil
}

// promoteChunk bounds the bytes moved in one write.
const promoteChunk = 8 << 20

// Promote moves the staged entries into the log, replacing entries at
// their indexes, and deletes every log entry below keepFrom. Each step is
// atomic and it may run again after a crash.
func (st *Store) Promote(keepFrom uint64) error {
	for {
		var kvs []storage.KV
		var size int
		var lo, hi uint64
		err := st.s.Range(st.stagePrefix, func(k, v []byte) bool {
			index, err := indexIn(st.stagePrefix, k)
			if err != nil {
				return true
			}
			if len(kvs) == 0 {
				lo = index
			}
			hi = index
			kvs = append(kvs, storage.KV{Key: st.logKey(index), Value: append([]byte(nil), v...)},
				storage.KV{Key: append([]byte(nil), k...)})
			size += len(v)
			return size < promoteChunk
		})
		if err != nil {
			return fmt.Errorf("raftlog: reading staged entries: %w", err)
		}
		if len(kvs) == 0 {
			break
		}
		if err := storage.WriteKVs(st.s, kvs...); err != nil {
			return fmt.Errorf("raftlog: promoting staged entries: %w", err)
		}
		st.mu.Lock()
		if st.first == 0 || lo < st.first {
			st.first = lo
		}
		st.last = max(st.last, hi)
		st.mu.Unlock()
	}
	st.mu.Lock()
	first := st.first
	st.mu.Unlock()
	if first != 0 && first < keepFrom {
		return st.DeleteRange(first, keepFrom-1)
	}
	return nil
}

// DropStaged discards staged entries.
func (st *Store) DropStaged() error { return st.deletePrefix(st.stagePrefix, "staged entries") }
