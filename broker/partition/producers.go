package partition

import (
	"encoding/binary"
	"fmt"
)

// recentBatches is how many batches per producer are remembered for
// duplicate detection; Kafka clients keep at most five in flight.
const recentBatches = 5

// seqBatch is one remembered batch of an idempotent producer.
type seqBatch struct {
	firstSeq, lastSeq int32
	baseOffset        int64
	appendTime        int64 // -1 unless LogAppendTime
}

// producer is the idempotence state of one producer ID in one partition.
type producer struct {
	epoch  int16
	recent []seqBatch // oldest first, at most recentBatches
}

// check decides what to do with a batch from this producer: ok to append,
// a duplicate of a remembered batch, or an error. A producer the partition
// has no state for is accepted at any sequence, as Kafka does, because its
// state may have been removed with its last batches.
func (p *producer) check(h *BatchHeader) (dup *seqBatch, err error) {
	if p == nil {
		return nil, nil
	}
	switch {
	case h.ProducerEpoch < p.epoch:
		return nil, fmt.Errorf("%w: epoch %d, current %d", ErrInvalidProducerEpoch, h.ProducerEpoch, p.epoch)
	case h.ProducerEpoch > p.epoch:
		if h.BaseSequence != 0 {
			return nil, fmt.Errorf("%w: new epoch %d must start at sequence 0, got %d", ErrOutOfOrderSequence, h.ProducerEpoch, h.BaseSequence)
		}
		return nil, nil
	}
	last := h.LastSequence()
	for i := range p.recent {
		if b := &p.recent[i]; b.firstSeq == h.BaseSequence && b.lastSeq == last {
			return b, nil
		}
	}
	if n := len(p.recent); n > 0 {
		prev := p.recent[n-1].lastSeq
		if !(h.BaseSequence == prev+1 || (prev == 1<<31-1 && h.BaseSequence == 0)) {
			return nil, fmt.Errorf("%w: expected %d, got %d", ErrOutOfOrderSequence, prev+1, h.BaseSequence)
		}
	}
	return nil, nil
}

// record remembers an appended batch. A marker (control batch), or a
// batch of offsets committed in a transaction, carries no sequence: it
// only moves the epoch forward, which a coordinator that bumps the epoch
// as it ends a transaction does.
func (p *producer) record(h *BatchHeader, base, appendTime int64) {
	if h.ProducerEpoch != p.epoch {
		p.epoch = h.ProducerEpoch
		p.recent = p.recent[:0]
	}
	if h.Control() || h.BaseSequence < 0 {
		return
	}
	if len(p.recent) == recentBatches {
		copy(p.recent, p.recent[1:])
		p.recent = p.recent[:recentBatches-1]
	}
	p.recent = append(p.recent, seqBatch{h.BaseSequence, h.LastSequence(), base, appendTime})
}

// marshal encodes the state for storage: epoch, count, then per batch
// first and last sequence, base offset and append time.
func (p *producer) marshal() []byte {
	b := make([]byte, 0, 3+len(p.recent)*24)
	b = binary.BigEndian.AppendUint16(b, uint16(p.epoch))
	b = append(b, byte(len(p.recent)))
	for _, r := range p.recent {
		b = binary.BigEndian.AppendUint32(b, uint32(r.firstSeq))
		b = binary.BigEndian.AppendUint32(b, uint32(r.lastSeq))
		b = binary.BigEndian.AppendUint64(b, uint64(r.baseOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(r.appendTime))
	}
	return b
}

func unmarshalProducer(b []byte) (*producer, error) {
	if len(b) < 3 || len(b) != 3+int(b[2])*24 || b[2] > recentBatches {
		return nil, fmt.Errorf("%w: producer state of %d bytes", ErrStorage, len(b))
	}
	p := &producer{epoch: int16(binary.BigEndian.Uint16(b))}
	for r := b[3:]; len(r) > 0; r = r[24:] {
		p.recent = append(p.recent, seqBatch{
			firstSeq:   int32(binary.BigEndian.Uint32(r)),
			lastSeq:    int32(binary.BigEndian.Uint32(r[4:])),
			baseOffset: int64(binary.BigEndian.Uint64(r[8:])),
			appendTime: int64(binary.BigEndian.Uint64(r[16:])),
		})
	}
	return p, nil
}
