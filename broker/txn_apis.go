package broker

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fencedCode is the code of a coordinator error for a request of a
// version that may not know PRODUCER_FENCED (KIP-588): older versions get
// INVALID_PRODUCER_EPOCH for it.
func fencedCode(err error, knowsFenced bool) int16 {
	if !knowsFenced && errors.Is(err, kerr.ProducerFenced) {
		return kerr.InvalidProducerEpoch.Code
	}
	return errorCode(err)
}

// initProducerTxn answers an InitProducerId with a transactional ID, on
// the coordinator of that ID.
func (b *Broker) initProducerTxn(r *kmsg.InitProducerIDRequest, resp *kmsg.InitProducerIDResponse, respond func(kmsg.Response)) {
	req := coordinator.InitProducerIDRequest{
		TransactionalID: *r.TransactionalID,
		Timeout:         time.Duration(r.TransactionTimeoutMillis) * time.Millisecond,
		ProducerID:      -1, Epoch: -1,
	}
	if r.Version >= 3 {
		req.ProducerID, req.Epoch = r.ProducerID, r.ProducerEpoch
	}
	b.txns.InitProducerID(req, func(pid int64, epoch int16, err error) {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
		resp.ErrorCode = fencedCode(err, r.Version >= 4)
		respond(resp)
	})
}

func (b *Broker) addPartitionsToTxnAPI() kproto.API {
	return kproto.API{Key: kmsg.AddPartitionsToTxn.Int16(), MinVersion: 0, MaxVersion: 5, Handle: b.addPartitionsToTxn}
}

// txnAdd is one transaction of an AddPartitionsToTxn request.
type txnAdd struct {
	id         string
	pid        int64
	epoch      int16
	verify     bool
	fromBroker bool // v4+: a partition leader's
	waited     bool // for unknown topics to show
	topics     []kmsg.AddPartitionsToTxnRequestTransactionTopic
}

// addPartitionsToTxn adds partitions to transactions: v0-3 one, from its
// producer; v4+ a batch, from brokers, possibly only verifying.
func (b *Broker) addPartitionsToTxn(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.AddPartitionsToTxnRequest)
	resp := r.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	var txns []txnAdd
	if r.Version < 4 {
		add := txnAdd{id: r.TransactionalID, pid: r.ProducerID, epoch: r.ProducerEpoch}
		for _, t := range r.Topics {
			add.topics = append(add.topics, kmsg.AddPartitionsToTxnRequestTransactionTopic{Topic: t.Topic, Partitions: t.Partitions})
		}
		txns = append(txns, add)
	} else {
		for _, t := range r.Transactions {
			txns = append(txns, txnAdd{id: t.TransactionalID, pid: t.ProducerID, epoch: t.ProducerEpoch, verify: t.VerifyOnly, fromBroker: true, topics: t.Topics})
		}
	}
	results := make([][]kmsg.AddPartitionsToTxnResponseTransactionTopic, len(txns))
	finish := afterAll(len(txns), func() {
		if r.Version < 4 {
			for _, t := range results[0] {
				rt := kmsg.NewAddPartitionsToTxnResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p.Partition, p.ErrorCode
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
		} else {
			for i, add := range txns {
				rt := kmsg.NewAddPartitionsToTxnResponseTransaction()
				rt.TransactionalID, rt.Topics = add.id, results[i]
				resp.Transactions = append(resp.Transactions, rt)
			}
		}
		respond(resp)
	})
	for i, add := range txns {
		b.addToTxn(add, r.Version >= 2, func(res []kmsg.AddPartitionsToTxnResponseTransactionTopic) {
			results[i] = res
			finish()
		})
	}
	finish()
}

// afterAll returns a function to call n+1 times: once per outstanding
// part and once when all have been started; the last call runs fn.
func afterAll(n int, fn func()) func() {
	var pending atomic.Int32
	pending.Store(int32(n) + 1)
	return func() {
		if pending.Add(-1) == 0 {
			fn()
		}
	}
}

// addToTxn adds (or verifies) one transaction's partitions and calls done
// with a result per partition.
func (b *Broker) addToTxn(add txnAdd, knowsFenced bool, done func([]kmsg.AddPartitionsToTxnResponseTransactionTopic)) {
	var tps []coordinator.TopicPartition
	unknown := make(map[coordinator.TopicPartition]bool)
	for _, t := range add.topics {
		mt := b.topics.get(t.Topic)
		for _, p := range t.Partitions {
			tp := coordinator.TopicPartition{Topic: t.Topic, Partition: p}
			tps = append(tps, tp)
			// A broker's request (v4+) comes from the partition's
			// leader, which knows it exists; this broker's metadata may
			// not show a topic created a moment ago yet.
			if !add.fromBroker && (mt == nil || p < 0 || int(p) >= len(mt.parts)) {
				unknown[tp] = true
			}
		}
	}
	answer := func(code func(tp coordinator.TopicPartition) int16) {
		out := make([]kmsg.AddPartitionsToTxnResponseTransactionTopic, 0, len(add.topics))
		for _, t := range add.topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
				rp.Partition, rp.ErrorCode = p, code(coordinator.TopicPartition{Topic: t.Topic, Partition: p})
				rt.Partitions = append(rt.Partitions, rp)
			}
			out = append(out, rt)
		}
		done(out)
	}
	if len(unknown) > 0 && !add.waited {
		// A topic created a moment ago through another broker may not
		// show here yet: look again for a moment before saying so.
		add.waited = true
		if b.goFunc(func() {
			deadline := time.Now().Add(unknownTopicWait)
			for time.Now().Before(deadline) && !b.knowsAll(unknown) {
				select {
				case <-b.ctx.Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			b.addToTxn(add, knowsFenced, done)
		}) {
			return
		}
	}
	if len(unknown) > 0 {
		// As Kafka: nothing is added when a partition does not exist.
		answer(func(tp coordinator.TopicPartition) int16 {
			if unknown[tp] {
				return kerr.UnknownTopicOrPartition.Code
			}
			return kerr.OperationNotAttempted.Code
		})
		return
	}
	if add.verify {
		res, err := b.txns.Verify(add.id, add.pid, add.epoch, tps)
		answer(func(tp coordinator.TopicPartition) int16 {
			if err != nil {
				return errorCode(err)
			}
			return errorCode(res[tp])
		})
		return
	}
	b.txns.AddPartitions(add.id, add.pid, add.epoch, tps, func(err error) {
		code := fencedCode(err, knowsFenced)
		answer(func(coordinator.TopicPartition) int16 { return code })
	})
}

// unknownTopicWait bounds how long AddPartitionsToTxn waits for topics
// this broker does not know yet.
const unknownTopicWait = time.Second

// knowsAll reports whether this broker knows every partition of tps.
func (b *Broker) knowsAll(tps map[coordinator.TopicPartition]bool) bool {
	for tp := range tps {
		if !b.knownPartition(tp.Topic, tp.Partition) {
			return false
		}
	}
	return true
}

func (b *Broker) addOffsetsToTxnAPI() kproto.API {
	return kproto.API{Key: kmsg.AddOffsetsToTxn.Int16(), MinVersion: 0, MaxVersion: 4, Handle: b.addOffsetsToTxn}
}

func (b *Broker) addOffsetsToTxn(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.AddOffsetsToTxnRequest)
	resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	b.txns.AddOffsets(r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Group, func(err error) {
		resp.ErrorCode = fencedCode(err, r.Version >= 2)
		respond(resp)
	})
}

// EndTxn v5+ is transactions version 2: an epoch bump per transaction,
// whose new producer ID and epoch the response carries.
func (b *Broker) endTxnAPI() kproto.API {
	return kproto.API{Key: kmsg.EndTxn.Int16(), MinVersion: 0, MaxVersion: 5, Handle: b.endTxn}
}

func (b *Broker) endTxn(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.EndTxnRequest)
	resp := r.ResponseKind().(*kmsg.EndTxnResponse)
	if r.Version >= 5 {
		b.txns.EndTxnV2(r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit, func(pid int64, epoch int16, err error) {
			resp.ProducerID, resp.ProducerEpoch = pid, epoch
			resp.ErrorCode = errorCode(err)
			respond(resp)
		})
		return
	}
	b.txns.EndTxn(r.TransactionalID, r.ProducerID, r.ProducerEpoch, r.Commit, func(err error) {
		resp.ErrorCode = fencedCode(err, r.Version >= 2)
		respond(resp)
	})
}

func (b *Broker) writeTxnMarkersAPI() kproto.API {
	return kproto.API{Key: kmsg.WriteTxnMarkers.Int16(), MinVersion: 0, MaxVersion: 1, Handle: b.writeTxnMarkers}
}

// writeTxnMarkers appends markers to the partitions this broker leads; the
// transaction coordinators of other brokers send it.
func (b *Broker) writeTxnMarkers(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.WriteTxnMarkersRequest)
	resp := r.ResponseKind().(*kmsg.WriteTxnMarkersResponse)
	n := 0
	for _, m := range r.Markers {
		for _, mt := range m.Topics {
			n += len(mt.Partitions)
		}
	}
	finish := afterAll(n, func() { respond(resp) })
	for _, m := range r.Markers {
		rm := kmsg.NewWriteTxnMarkersResponseMarker()
		rm.ProducerID = m.ProducerID
		for _, mt := range m.Topics {
			rt := kmsg.NewWriteTxnMarkersResponseMarkerTopic()
			rt.Topic = mt.Topic
			rt.Partitions = make([]kmsg.WriteTxnMarkersResponseMarkerTopicPartition, len(mt.Partitions))
			t := b.topics.get(mt.Topic)
			for i, n := range mt.Partitions {
				rp := &rt.Partitions[i]
				rp.Default()
				rp.Partition = n
				if _, err := leaderPartition(t, n); err != nil {
					rp.ErrorCode = errorCode(err)
					finish()
					continue
				}
				b.appendMarker(t, n, m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch, func(err error) {
					rp.ErrorCode = errorCode(err)
					finish()
				})
			}
			rm.Topics = append(rm.Topics, rt)
		}
		resp.Markers = append(resp.Markers, rm)
	}
	finish()
}

// TxnOffsetCommit v5+ adds the group's offsets partition to the
// transaction itself (transactions version 2).
func (b *Broker) txnOffsetCommitAPI() kproto.API {
	return kproto.API{Key: kmsg.TxnOffsetCommit.Int16(), MinVersion: 0, MaxVersion: 5, Handle: b.txnOffsetCommit}
}

// txnOffsetCommit writes a transaction's offsets on the group's
// coordinator; they take effect when the transaction commits.
func (b *Broker) txnOffsetCommit(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.TxnOffsetCommitRequest)
	resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	cr := coordinator.TxnCommitRequest{Group: r.Group, ProducerID: r.ProducerID, Epoch: r.ProducerEpoch, Generation: -1}
	if r.Version >= 3 {
		cr.Generation, cr.MemberID, cr.InstanceID = r.Generation, r.MemberID, r.InstanceID
	}
	var slots []*kmsg.TxnOffsetCommitResponseTopicPartition
	resp.Topics = make([]kmsg.TxnOffsetCommitResponseTopic, len(r.Topics))
	for i, rt := range r.Topics {
		st := &resp.Topics[i]
		st.Default()
		st.Topic = rt.Topic
		st.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			sp.Default()
			sp.Partition = rp.Partition
			if !b.knownPartition(rt.Topic, rp.Partition) {
				sp.ErrorCode = errorCode(ErrUnknownTopic)
				continue
			}
			cr.Offsets = append(cr.Offsets, coordinator.CommitOffset{
				TopicPartition: coordinator.TopicPartition{Topic: rt.Topic, Partition: rp.Partition},
				Offset:         rp.Offset,
				LeaderEpoch:    rp.LeaderEpoch,
				Metadata:       rp.Metadata,
			})
			slots = append(slots, sp)
		}
	}
	if len(cr.Offsets) == 0 {
		respond(resp)
		return
	}
	commit := func() {
		b.groups.TxnCommitOffsets(cr, func(errs []error) {
			for i, err := range errs {
				if r.Version < 2 && errors.Is(err, coordinator.ErrLoadInProgress) {
					err = coordinator.ErrCoordinatorNotAvailable
				}
				slots[i].ErrorCode = fencedCode(err, r.Version >= 3)
			}
			respond(resp)
		})
	}
	if r.Version < 5 {
		commit()
		return
	}
	tp := coordinator.TopicPartition{Topic: coordinator.OffsetsTopic, Partition: b.groups.PartitionFor(r.Group)}
	b.txnPartition(r.TransactionalID, r.ProducerID, r.ProducerEpoch, tp, false, func(err error) {
		if err == nil {
			commit()
			return
		}
		for _, sp := range slots {
			sp.ErrorCode = fencedCode(err, false)
		}
		respond(resp)
	})
}
