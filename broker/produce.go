package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce is served from v0: v0-v2 requests are accepted when they carry v2
// record batches (as Kafka 3 did); their older message formats are refused
// with UNSUPPORTED_FOR_MESSAGE_FORMAT. Advertising v0 also matters to
// librdkafka, which only compresses with gzip and snappy when the broker
// lists Produce v0.
func (b *Broker) produceAPI() kproto.API {
	return kproto.API{Key: kmsg.Produce.Int16(), MinVersion: 0, MaxVersion: 13, Handle: b.produce}
}

// produce validates each partition's batch on the connection's goroutine
// (the CRC check runs in parallel across connections) and hands it to the
// partition; the response goes out when the last partition's append is
// durable, or when the request's TimeoutMillis has passed: the partitions
// still waiting then are answered REQUEST_TIMED_OUT, as Kafka's are, so
// that one partition that cannot commit does not hold up the others. A
// write answered so is never reported as acknowledged; if it commits
// later, an idempotent producer's retry of it is a duplicate and gets its
// offset. Nothing here touches individual records.
//
// An acks=0 produce gets no response; if it fails, the connection is closed
// instead, as Kafka does, so that the client notices and refreshes its
// metadata. Failed means refused before the partition accepted the batch
// (unknown topic or partition, not the leader, an invalid batch); like
// Kafka's, an acks=0 produce does not wait to learn whether the accepted
// batch became durable.
func (b *Broker) produce(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.ProduceRequest)
	resp := r.ResponseKind().(*kmsg.ProduceResponse)
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(r.Topics))
	acks := partition.Acks(r.Acks)
	badAcks := acks != partition.AcksNone && acks != partition.AcksLeader && acks != partition.AcksAll
	pc := &produceCall{resp: resp, respond: respond, acks: acks, version: r.Version}
	pc.pending.Store(1) // this loop's
	for i := range r.Topics {
		rt := &r.Topics[i]
		st := &resp.Topics[i]
		st.Default()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		t, terr := b.topicByRequest(r.Version >= 13, rt.Topic, rt.TopicID)
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			sp.Default()
			sp.Partition = rp.Partition
			sp.BaseOffset = -1
			err := terr
			switch {
			case err != nil:
			case badAcks:
				err = kerr.InvalidRequiredAcks
			case rp.Partition < 0 || int(rp.Partition) >= len(t.parts):
				err = ErrUnknownTopic
			}
			if err == nil {
				err = b.appendBatch(t, rp, r, pc, sp)
			}
			if errors.Is(err, partition.ErrOldMessageFormat) && r.Version >= 3 {
				// Produce v3+ may only carry v2 batches: Kafka calls
				// anything else an invalid record.
				err = fmt.Errorf("%w: %w", partition.ErrInvalidRecord, err)
			}
			if err != nil {
				pc.failed.Store(true)
				sp.ErrorCode = errorCode(err)
				if r.Version >= 8 {
					sp.ErrorMessage = errorMessage(err)
				}
			}
		}
	}
	if acks == partition.AcksNone {
		if pc.failed.Load() {
			respond(kproto.CloseConnection)
		} else {
			respond(nil)
		}
	} else if r.TimeoutMillis > 0 && pc.pending.Load() > 1 {
		timeout := time.Duration(r.TimeoutMillis) * time.Millisecond
		pc.mu.Lock()
		if !pc.responded {
			pc.timer = time.AfterFunc(timeout, func() { pc.timedOut(timeout) })
		}
		pc.mu.Unlock()
	}
	pc.finish()
}

// produceCall is one produce request in flight: its response, filled in as
// the partitions' appends end, and sent by the last of them or by the
// request's timeout, whichever comes first. After that, late outcomes are
// dropped (the response is being encoded).
type produceCall struct {
	resp    *kmsg.ProduceResponse
	respond func(kmsg.Response)
	acks    partition.Acks
	version int16
	// pending counts outstanding appends plus one for the request's
	// loop, so the response cannot be sent before every partition has
	// been handed over.
	pending atomic.Int32
	// failed is set by any partition's error, including one an append
	// reports while the handler still runs; only acks=0 reads it.
	failed atomic.Bool

	mu        sync.Mutex
	responded bool
	timer     *time.Timer
	waiting   map[*kmsg.ProduceResponseTopicPartition]struct{} // appends started and not ended
}

// started records that sp's append is under way.
func (pc *produceCall) started(sp *kmsg.ProduceResponseTopicPartition) {
	pc.pending.Add(1)
	pc.mu.Lock()
	if pc.waiting == nil {
		pc.waiting = make(map[*kmsg.ProduceResponseTopicPartition]struct{})
	}
	pc.waiting[sp] = struct{}{}
	pc.mu.Unlock()
}

// ended fills sp with its append's outcome (fill), unless the response
// already went out, and counts the append as done.
func (pc *produceCall) ended(sp *kmsg.ProduceResponseTopicPartition, fill func()) {
	pc.mu.Lock()
	if !pc.responded {
		fill()
		delete(pc.waiting, sp)
	}
	pc.mu.Unlock()
	pc.finish()
}

// finish counts one append (or the request's loop) as done and sends the
// response after the last.
func (pc *produceCall) finish() {
	if pc.pending.Add(-1) != 0 || pc.acks == partition.AcksNone {
		return
	}
	pc.mu.Lock()
	if pc.responded {
		pc.mu.Unlock()
		return
	}
	pc.responded = true
	if pc.timer != nil {
		pc.timer.Stop()
	}
	pc.mu.Unlock()
	pc.respond(pc.resp)
}

// timedOut answers the partitions still waiting REQUEST_TIMED_OUT and sends
// the response.
func (pc *produceCall) timedOut(timeout time.Duration) {
	pc.mu.Lock()
	if pc.responded {
		pc.mu.Unlock()
		return
	}
	pc.responded = true
	err := fmt.Errorf("%w: the write was not replicated within the request's timeout of %v; it is not acknowledged", kerr.RequestTimedOut, timeout)
	for sp := range pc.waiting {
		sp.ErrorCode, sp.BaseOffset = errorCode(err), -1
		if pc.version >= 8 {
			sp.ErrorMessage = errorMessage(err)
		}
	}
	pc.waiting = nil
	pc.mu.Unlock()
	pc.respond(pc.resp)
}

// appendBatch checks one partition's batch and starts its append, whose
// outcome fills sp.
func (b *Broker) appendBatch(t *topic, rp *kmsg.ProduceRequestTopicPartition, r *kmsg.ProduceRequest, pc *produceCall, sp *kmsg.ProduceResponseTopicPartition) error {
	acks := pc.acks
	ec := &t.effective
	if acks == partition.AcksAll && ec.minInSync > 1 {
		// As in Kafka, a leader whose ISR is smaller than
		// min.insync.replicas refuses acks=all writes before it looks at
		// them (Raft's majority commit applies on top).
		if isr, leads := b.inSyncReplicas(t, rp.Partition); leads && isr < ec.minInSync {
			return fmt.Errorf("%w: %d in-sync replicas, min.insync.replicas is %d", kerr.NotEnoughReplicas, isr, ec.minInSync)
		}
	}
	if len(rp.Records) > int(ec.maxMessage) {
		return fmt.Errorf("%w: %d bytes, max.message.bytes is %d", ErrMessageTooLarge, len(rp.Records), ec.maxMessage)
	}
	h, err := partition.CheckProduced(rp.Records)
	if err != nil {
		return err
	}
	if h.Transactional() && h.ProducerID < 0 {
		return fmt.Errorf("%w: a transactional batch without a producer ID", partition.ErrInvalidRecord)
	}
	if ec.compactPolicy {
		if err := partition.CheckKeyed(rp.Records, h, b.decompressor); err != nil {
			return err
		}
	}
	pc.started(sp)
	p := t.parts[rp.Partition]
	start := func() {
		p.Append(rp.Records, h, partition.AppendOptions{Acks: acks, LogAppendTime: ec.logAppendTime}, func(res partition.AppendResult) {
			if res.Err != nil {
				pc.failed.Store(true)
			}
			pc.ended(sp, func() {
				sp.BaseOffset = res.BaseOffset
				sp.LogAppendTime = res.LogAppendTime
				sp.LogStartOffset = res.LogStartOffset
				if res.Err != nil {
					sp.ErrorCode = errorCode(res.Err)
					sp.ErrorMessage = errorMessage(res.Err)
					sp.BaseOffset = -1
				}
			})
		})
	}
	if !h.Transactional() {
		start()
		return nil
	}
	// The first batch of a transaction here: its coordinator must have it
	// in the transaction (KIP-890), or a late batch of a transaction that
	// ended would open one nobody ends.
	b.txnVerifier.append(p, h.ProducerID, func(err error) {
		if err == nil {
			start()
			return
		}
		pc.failed.Store(true)
		pc.ended(sp, func() {
			sp.ErrorCode = errorCode(err)
			sp.ErrorMessage = errorMessage(err)
		})
	}, func(done func(error)) { b.verifyTxn(r, t.name, rp.Partition, h, done) })
	return nil
}
