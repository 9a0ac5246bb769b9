package partition

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// Control entries carry a marker in their Raft log extensions; entries
// without one hold record batches.
const (
	ctrlSetLogStart byte = 1
)

// entryMeta locates the batches of one applied Raft entry.
type entryMeta struct {
	First int64  `json:"f"`
	Last  int64  `json:"l"`
	Index uint64 `json:"i"` // Raft log index
	MaxTS int64  `json:"t"`
	Size  int32  `json:"s"` // bytes of batches
}

// epochStart is the first offset written in a leader epoch.
type epochStart struct {
	Epoch int32 `json:"e"`
	Start int64 `json:"s"`
}

// replicaFSM is the committed state of a replicated partition, the same on
// every replica: where each offset's batch is in the Raft log, the log
// start, the idempotent producers, and the leader epochs. Batches are not
// copied: the Raft log is the partition log.
type replicaFSM struct {
	onCommit func()

	mu        sync.RWMutex
	next      int64 // the high watermark
	logStart  int64
	entries   []entryMeta
	producers map[int64]*producer
	epochs    []epochStart
	txns      txnState
}

func newReplicaFSM(onCommit func()) *replicaFSM {
	return &replicaFSM{onCommit: onCommit, producers: make(map[int64]*producer), txns: newTxnState()}
}

var _ raft.BatchingFSM = (*replicaFSM)(nil)

// Apply implements raft.FSM.
func (f *replicaFSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM. The response of a batch entry is
// its first offset, or an error when the entry does not continue the log
// (then nothing of it is applied, on any replica).
func (f *replicaFSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	f.mu.Lock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if len(l.Extensions) > 0 {
			out[i] = f.applyControl(l)
			continue
		}
		out[i] = f.applyBatches(l)
	}
	f.mu.Unlock()
	f.onCommit()
	return out
}

type parsedBatch struct {
	h    BatchHeader
	base int64
	b    []byte // the whole batch
}

func (f *replicaFSM) applyBatches(l *raft.Log) any {
	var batches []parsedBatch
	next := f.next
	maxTS := int64(-1)
	for data := l.Data; len(data) > 0; {
		h, err := ParseHeader(data)
		if err != nil {
			return fmt.Errorf("%w: entry %d: %w", ErrStorage, l.Index, err)
		}
		// Compaction may have removed batches inside an entry, but keeps
		// its first one, so only that one must continue the log.
		base := int64(binary.BigEndian.Uint64(data))
		if base != next && (len(batches) == 0 || base < next) {
			return fmt.Errorf("%w: entry %d has offset %d where %d follows", ErrStorage, l.Index, base, next)
		}
		batches = append(batches, parsedBatch{h, base, data[:h.Size()]})
		next = base + int64(h.LastOffsetDelta) + 1
		maxTS = max(maxTS, h.MaxTimestamp)
		data = data[h.Size():]
	}
	if len(batches) == 0 {
		return fmt.Errorf("%w: entry %d holds no batch", ErrStorage, l.Index)
	}
	first := f.next
	for _, b := range batches {
		// A marker that does not parse is refused on the leader before it
		// is proposed; here it would only leave its transaction open.
		_, _ = f.txns.apply(b.b, &b.h, b.base)
		if b.h.Idempotent() {
			pr := f.producers[b.h.ProducerID]
			if pr == nil {
				pr = &producer{epoch: b.h.ProducerEpoch}
				f.producers[b.h.ProducerID] = pr
			}
			appendTime := int64(-1)
			if b.h.Attributes&attrLogAppendTime != 0 {
				appendTime = b.h.MaxTimestamp
			}
			pr.record(&b.h, b.base, appendTime)
		}
	}
	if epoch := int32(l.Term); len(f.epochs) == 0 || f.epochs[len(f.epochs)-1].Epoch != epoch {
		f.epochs = append(f.epochs, epochStart{Epoch: epoch, Start: first})
	}
	f.entries = append(f.entries, entryMeta{First: first, Last: next - 1, Index: l.Index, MaxTS: maxTS, Size: int32(len(l.Data))})
	f.next = next
	return first
}

func (f *replicaFSM) applyControl(l *raft.Log) any {
	switch l.Extensions[0] {
	case ctrlSetLogStart:
		if len(l.Data) != 8 {
			return fmt.Errorf("%w: log start command of %d bytes", ErrStorage, len(l.Data))
		}
		offset := int64(binary.BigEndian.Uint64(l.Data))
		if offset > f.next {
			return fmt.Errorf("%w: %d is past the high watermark %d", ErrOffsetOutOfRange, offset, f.next)
		}
		if offset > f.logStart {
			f.logStart = offset
			n := sort.Search(len(f.entries), func(i int) bool { return f.entries[i].Last >= offset })
			f.entries = append([]entryMeta(nil), f.entries[n:]...)
			f.txns.trim(offset)
		}
		return f.logStart
	default:
		return fmt.Errorf("%w: unknown control entry %d", ErrStorage, l.Extensions[0])
	}
}

// view is a consistent copy of what readers need.
type fsmView struct {
	next, logStart, stable int64
	epoch                  int32
}

func (f *replicaFSM) view() fsmView {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := fsmView{next: f.next, logStart: f.logStart, stable: f.txns.stable(f.next), epoch: -1}
	if n := len(f.epochs); n > 0 {
		v.epoch = f.epochs[n-1].Epoch
	}
	return v
}

// resize records the sizes of entries that compaction rewrote. Readers
// keep the slice they had.
func (f *replicaFSM) resize(sizes map[uint64]int32) {
	if len(sizes) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	entries := slices.Clone(f.entries)
	for i := range entries {
		if s, ok := sizes[entries[i].Index]; ok {
			entries[i].Size = s
		}
	}
	f.entries = entries
}

// entriesFrom returns the metadata of the entries holding offset and after.
func (f *replicaFSM) entriesFrom(offset int64) []entryMeta {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := sort.Search(len(f.entries), func(i int) bool { return f.entries[i].Last >= offset })
	return f.entries[n:len(f.entries):len(f.entries)]
}

func (f *replicaFSM) cloneProducers() map[int64]*producer {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[int64]*producer, len(f.producers))
	for id, p := range f.producers {
		out[id] = &producer{epoch: p.epoch, recent: append([]seqBatch(nil), p.recent...)}
	}
	return out
}

func (f *replicaFSM) cloneTxns() txnState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.txns.clone()
}

// forgetAborted drops the aborted transactions this replica's compaction
// found without records (see compactMarker).
func (f *replicaFSM) forgetAborted(removed []AbortedTxn) {
	if len(removed) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.txns.forget(removed)
}

// abortedIn returns the aborted transactions a read of [from, to) may
// touch.
func (f *replicaFSM) abortedIn(from, to int64) []AbortedTxn {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.txns.abortedIn(from, to)
}

// endOffsetForEpoch answers OffsetForLeaderEpoch as Kafka's leader epoch
// cache does.
func (f *replicaFSM) endOffsetForEpoch(epoch int32) (int32, int64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := len(f.epochs)
	switch {
	case epoch < 0 || n == 0:
		return -1, -1
	case f.epochs[n-1].Epoch == epoch:
		return epoch, f.next
	}
	hi := sort.Search(n, func(i int) bool { return f.epochs[i].Epoch > epoch })
	if hi == n {
		return -1, -1 // newer than any epoch here
	}
	if hi == 0 {
		return epoch, f.epochs[0].Start
	}
	return f.epochs[hi-1].Epoch, f.epochs[hi].Start
}

// fsmState is the snapshot form: metadata only, never batches.
type fsmState struct {
	Next      int64            `json:"next"`
	LogStart  int64            `json:"log_start"`
	Entries   []entryMeta      `json:"entries"`
	Epochs    []epochStart     `json:"epochs"`
	Producers map[int64][]byte `json:"producers"`
	OpenTxns  map[int64]int64  `json:"open_txns,omitempty"`
	Aborted   []AbortedTxn     `json:"aborted,omitempty"`
}

// Snapshot implements raft.FSM.
func (f *replicaFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := fsmState{Next: f.next, LogStart: f.logStart, Entries: append([]entryMeta(nil), f.entries...),
		Epochs: append([]epochStart(nil), f.epochs...), Producers: make(map[int64][]byte, len(f.producers))}
	txns := f.txns.clone()
	st.OpenTxns, st.Aborted = txns.open, txns.aborted
	for id, p := range f.producers {
		st.Producers[id] = p.marshal()
	}
	return &fsmSnapshot{st}, nil
}

// Restore implements raft.FSM. It reads the state and stops: a transfer's
// entries after it are already in the log.
func (f *replicaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := decodeState(rc)
	if err != nil {
		return err
	}
	producers := make(map[int64]*producer, len(st.Producers))
	for id, b := range st.Producers {
		p, err := unmarshalProducer(b)
		if err != nil {
			return err
		}
		producers[id] = p
	}
	txns := newTxnState()
	for id, first := range st.OpenTxns {
		txns.open[id] = first
	}
	txns.aborted = st.Aborted
	f.mu.Lock()
	f.next, f.logStart, f.entries, f.epochs, f.producers, f.txns = st.Next, st.LogStart, st.Entries, st.Epochs, producers, txns
	f.mu.Unlock()
	f.onCommit()
	return nil
}

// decodeState reads the state frame that opens a snapshot (or the bare
// JSON of snapshots written before frames).
func decodeState(r io.Reader) (*fsmState, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(1)
	if err != nil {
		return nil, fmt.Errorf("partition: restoring snapshot: %w", err)
	}
	if head[0] == frameTransfer { // a transfer's state follows its head
		if _, err := br.Discard(frameHeader + transferPayload); err != nil {
			return nil, fmt.Errorf("partition: restoring snapshot: %w", err)
		}
		if head, err = br.Peek(1); err != nil {
			return nil, fmt.Errorf("partition: restoring snapshot: %w", err)
		}
	}
	var src io.Reader = br
	if head[0] == frameState {
		var h [frameHeader]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return nil, fmt.Errorf("partition: restoring snapshot: %w", err)
		}
		src = io.LimitReader(br, int64(binary.BigEndian.Uint32(h[1:])))
	}
	var st fsmState
	if err := json.NewDecoder(src).Decode(&st); err != nil {
		return nil, fmt.Errorf("partition: restoring snapshot: %w", err)
	}
	return &st, nil
}

type fsmSnapshot struct{ st fsmState }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := json.Marshal(&s.st)
	if err == nil {
		_, err = sink.Write(appendFrame(nil, frameState, b))
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("partition: writing snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
