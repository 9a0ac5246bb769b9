package storage

import (
	"bytes"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Memory is the in-memory Store for tests. It shares the group committer
// with Badger, so Done ordering, barriers and close behave the same; it only
// lacks durability.
type Memory struct {
	c *committer
	// full makes Reserve refuse every write, as a full disk would.
	full atomic.Bool
	// fault, if set, is the error every commit returns.
	fault atomic.Pointer[error]

	mu     sync.RWMutex
	closed bool
	logs   map[LogID][]memBatch
	kvs    map[string][]byte

	closeOnce sync.Once
}

// memBatch is one stored batch. Stored slices are never written in place:
// inserts that are not appends and deletes build new slices, so a reader may
// iterate a slice it took under the lock after releasing it.
type memBatch struct {
	key  [metaLen]byte // the meta as Badger orders it
	meta BatchMeta
	data []byte
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store with its committer running;
// Close stops it.
func NewMemory() *Memory {
	m := &Memory{
		logs: make(map[LogID][]memBatch),
		kvs:  make(map[string][]byte),
	}
	m.c = startCommitter(checkWrite, m.commit)
	return m
}

// Submit implements Store.
func (m *Memory) Submit(w *Write) { m.c.submit(w) }

// Close implements Store.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		m.c.close()
		m.mu.Lock()
		m.closed = true
		m.logs, m.kvs = nil, nil
		m.mu.Unlock()
	})
	return nil
}

func (m *Memory) commit(ws []*Write) error {
	if e := m.fault.Load(); e != nil {
		return *e
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range ws {
		for _, r := range w.Remove {
			m.remove(r)
		}
		for i := range w.Batches {
			m.insert(&w.Batches[i])
		}
		for i := range w.KVs {
			kv := &w.KVs[i]
			if kv.Value == nil {
				delete(m.kvs, string(kv.Key))
			} else {
				m.kvs[string(kv.Key)] = append([]byte{}, kv.Value...)
			}
		}
	}
	return nil
}

func (m *Memory) insert(b *Batch) {
	nb := memBatch{meta: b.Meta, data: bytes.Clone(b.Data)}
	appendMeta(nb.key[:0], b.Meta)
	s := m.logs[b.Log]
	i, found := slices.BinarySearchFunc(s, nb.key, func(e memBatch, k [metaLen]byte) int {
		return bytes.Compare(e.key[:], k[:])
	})
	switch {
	case i == len(s):
		m.logs[b.Log] = append(s, nb) // writes past every reader's length
	case found:
		ns := slices.Clone(s)
		ns[i] = nb
		m.logs[b.Log] = ns
	default:
		ns := make([]memBatch, 0, len(s)+1)
		ns = append(append(append(ns, s[:i]...), nb), s[i:]...)
		m.logs[b.Log] = ns
	}
}

// remove deletes one batch; readers keep the slice they had.
func (m *Memory) remove(r BatchRef) {
	var key [metaLen]byte
	appendMeta(key[:0], r.Meta)
	s := m.logs[r.Log]
	i, found := slices.BinarySearchFunc(s, key, func(e memBatch, k [metaLen]byte) int {
		return bytes.Compare(e.key[:], k[:])
	})
	if found {
		m.logs[r.Log] = slices.Delete(slices.Clone(s), i, i+1)
	}
}

// batches returns the stored slice of log (see memBatch for why it may be
// read without the lock).
func (m *Memory) batches(log LogID) ([]memBatch, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.logs[log], nil
}

// firstFrom is the index of the first batch with LastOffset >= from.
func firstFrom(s []memBatch, from int64) int {
	return sort.Search(len(s), func(i int) bool { return s[i].meta.LastOffset >= from })
}

// Scan implements Store.
func (m *Memory) Scan(log LogID, from int64, fn func(m BatchMeta, data []byte) bool) error {
	s, err := m.batches(log)
	if err != nil {
		return err
	}
	for _, b := range s[firstFrom(s, from):] {
		if !fn(b.meta, b.data) {
			break
		}
	}
	return nil
}

// Index implements Store.
func (m *Memory) Index(log LogID, fn func(m BatchMeta) bool) error {
	s, err := m.batches(log)
	if err != nil {
		return err
	}
	for _, b := range s {
		if !fn(b.meta) {
			break
		}
	}
	return nil
}

// DeleteBatches implements Store.
func (m *Memory) DeleteBatches(log LogID, before int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	s := m.logs[log]
	if i := firstFrom(s, before); i > 0 {
		m.logs[log] = slices.Clone(s[i:]) // a copy frees the deleted batches
	}
	return nil
}

// DropLog implements Store.
func (m *Memory) DropLog(log LogID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	delete(m.logs, log)
	return nil
}

// Get implements Store. The result is the caller's to keep.
func (m *Memory) Get(key []byte) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	v, ok := m.kvs[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

// Range implements Store. fn runs without the lock held (values are never
// modified in place), so it may Submit.
// KeyBounds implements Store.
func (m *Memory) KeyBounds(prefix []byte) (first, last []byte, ok bool, err error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, nil, false, ErrClosed
	}
	for k := range m.kvs {
		if !strings.HasPrefix(k, string(prefix)) {
			continue
		}
		if !ok || k < string(first) {
			first = []byte(k)
		}
		if !ok || k > string(last) {
			last = []byte(k)
		}
		ok = true
	}
	return first, last, ok, nil
}

func (m *Memory) Range(prefix []byte, fn func(k, v []byte) bool) error {
	type kv struct {
		k string
		v []byte
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return ErrClosed
	}
	var found []kv
	for k, v := range m.kvs {
		if strings.HasPrefix(k, string(prefix)) {
			found = append(found, kv{k, v})
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(found, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for _, e := range found {
		if !fn([]byte(e.k), e.v) {
			break
		}
	}
	return nil
}

// Reserve implements Store: it refuses while SetFull(true) holds, and
// once a commit failed (see FailCommits).
func (m *Memory) Reserve(int) error {
	if err := m.c.failure(); err != nil {
		return err
	}
	if m.full.Load() {
		return ErrDiskFull
	}
	return nil
}

// Failed implements Store.
func (m *Memory) Failed() error { return m.c.failure() }

// FailCommits makes every commit from now on fail with err, as a disk
// whose writes or syncs fail would (nil: commits succeed again).
func (m *Memory) FailCommits(err error) {
	if err == nil {
		m.fault.Store(nil)
		return
	}
	m.fault.Store(&err)
}

// SpaceLow implements Store.
func (m *Memory) SpaceLow() bool { return m.full.Load() }

// SetFull makes the store behave as one whose disk is full (true) or not.
func (m *Memory) SetFull(full bool) { m.full.Store(full) }
