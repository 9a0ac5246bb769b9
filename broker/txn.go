package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/coordinator"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactions: the coordinator (coordinator.Txns) keeps their state in
// the internal topic __transaction_state, which the broker creates when a
// client first looks for a transaction coordinator, as Kafka does. The
// markers that end a transaction are appended by each partition's leader:
// this broker's own partitions directly, the others' through
// WriteTxnMarkers requests. The handlers of the transaction APIs are in
// txn_apis.go.

// txnConfig is the transaction coordinator's part of the configuration.
func (c *Config) txnConfig() coordinator.TxnConfig {
	tc := coordinator.DefaultTxnConfig()
	tc.Partitions, tc.OffsetsPartitions = c.TransactionStatePartitions, c.OffsetsTopicPartitions
	tc.MaxTimeout, tc.IDExpiration = c.TransactionMaxTimeout, c.TransactionalIDExpiration
	tc.CheckInterval = c.TransactionAbortCheckInterval
	return tc
}

// initTxns creates the transaction coordinator.
func (b *Broker) initTxns() error {
	tc := b.cfg.txnConfig()
	tc.Decompressor = b.decompressor
	b.peerClient = &peerClient{b: b}
	t, err := coordinator.NewTxns(tc, b.log.With().Str("component", "transactions").Logger(), b.allocateProducerID, b)
	if err != nil {
		return err
	}
	b.txns = t
	return nil
}

// electable is a coordinator that serves the partitions of an internal
// topic this broker leads.
type electable interface {
	Elect(n int32, p partition.Partition)
	Resign(n int32)
}

// coordinatorOf is the coordinator serving the partitions of the topic
// named, or nil.
func (b *Broker) coordinatorOf(name string) electable {
	switch {
	case name == coordinator.OffsetsTopic && b.groups != nil:
		return b.groups
	case name == coordinator.TxnStateTopic && b.txns != nil:
		return b.txns
	}
	return nil
}

// txnTopicWait bounds how long a request waits for __transaction_state
// to be created before it answers COORDINATOR_NOT_AVAILABLE.
const txnTopicWait = 2 * time.Second

// ensureTxnTopic creates __transaction_state if no broker has yet, in
// the background, and reports whether it exists with a leader for every
// partition.
func (b *Broker) ensureTxnTopic() bool {
	if t := b.topics.get(coordinator.TxnStateTopic); t != nil && len(t.parts) > 0 {
		if n := int32(len(t.parts)); n != b.txns.Partitions() && b.txnTopicMismatch.CompareAndSwap(false, true) {
			b.log.Error().Int32("topic_partitions", n).Int32("configured", b.txns.Partitions()).
				Msg("__transaction_state has another partition count than --transaction-state-partitions; transactional IDs map to partitions by the configured count")
		}
		return true
	}
	if !b.txnTopicCreating.CompareAndSwap(false, true) {
		return false
	}
	b.goFunc(func() {
		defer b.txnTopicCreating.Store(false)
		if b.ctrl.State().Topics[coordinator.TxnStateTopic] != nil {
			return
		}
		t, err := b.createTopic(coordinator.TxnStateTopic, b.txns.Partitions(), -1, map[string]string{"cleanup.policy": "compact"}, false)
		switch {
		case err == nil:
			b.log.Info().Int32("partitions", b.txns.Partitions()).Msg("created __transaction_state")
			b.awaitLeaders(t.id, time.Now().Add(offsetsLeaderWait))
		case errors.Is(err, ErrTopicExists):
		default:
			b.log.Warn().Err(err).Msg("creating __transaction_state")
		}
	})
	return false
}

// txnCoordinator is the broker leading the __transaction_state partition
// of a transactional ID.
func (b *Broker) txnCoordinator(id string) (kmsg.MetadataResponseBroker, error) {
	deadline := time.Now().Add(txnTopicWait)
	for !b.ensureTxnTopic() {
		if time.Now().After(deadline) {
			return kmsg.MetadataResponseBroker{}, fmt.Errorf("%w: %s is being created", coordinator.ErrCoordinatorNotAvailable, coordinator.TxnStateTopic)
		}
		select {
		case <-b.ctx.Done():
			return kmsg.MetadataResponseBroker{}, coordinator.ErrCoordinatorNotAvailable
		case <-time.After(20 * time.Millisecond):
		}
	}
	return b.internalLeader(coordinator.TxnStateTopic, b.txns.PartitionFor(id))
}

// WriteMarkers implements coordinator.Markers: it appends the marker to
// the partitions this broker leads and sends WriteTxnMarkers to the
// leaders of the others, round after round until every partition has it
// or ctx ends. Partitions of deleted topics need none.
func (b *Broker) WriteMarkers(ctx context.Context, r coordinator.MarkerRequest) error {
	pending := r.Partitions
	backoff := 10 * time.Millisecond
	for {
		var mu sync.Mutex
		var failed []coordinator.TopicPartition
		var lastErr error
		fail := func(tp coordinator.TopicPartition, err error) {
			mu.Lock()
			failed, lastErr = append(failed, tp), err
			mu.Unlock()
		}
		remote := make(map[int32][]coordinator.TopicPartition)
		var wg sync.WaitGroup
		for _, tp := range pending {
			t := b.topics.get(tp.Topic)
			if t == nil || int(tp.Partition) >= len(t.parts) {
				continue // deleted: nothing to end
			}
			if p := t.parts[tp.Partition]; p.IsLeader() {
				wg.Add(1)
				b.appendMarker(t, tp.Partition, r.ProducerID, r.Epoch, r.Commit, r.CoordinatorEpoch, func(err error) {
					if err != nil {
						fail(tp, err)
					}
					wg.Done()
				})
				continue
			}
			leader := int32(-1)
			if int(tp.Partition) < len(t.leaders) {
				leader = t.leaders[tp.Partition].Leader
			}
			if leader < 0 || leader == b.cfg.NodeID {
				fail(tp, fmt.Errorf("%s-%d: %w", tp.Topic, tp.Partition, partition.ErrNotLeader))
				continue
			}
			remote[leader] = append(remote[leader], tp)
		}
		for leader, tps := range remote {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, tp := range b.peerClient.writeMarkers(ctx, leader, r, tps) {
					fail(tp.tp, tp.err)
				}
			}()
		}
		wg.Wait()
		if len(failed) == 0 {
			return nil
		}
		if errors.Is(lastErr, partition.ErrInvalidProducerEpoch) || errors.Is(lastErr, kerr.InvalidProducerEpoch) {
			// A newer producer epoch is in the log: this marker is stale
			// and must not be written (its transaction was ended).
			return fmt.Errorf("marker of producer %d epoch %d: %w", r.ProducerID, r.Epoch, lastErr)
		}
		pending = failed
		select {
		case <-ctx.Done():
			return fmt.Errorf("writing markers: %w (last: %w)", ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// appendMarker appends a transaction marker to partition n of t, which
// this broker leads, and calls done once it is durable.
func (b *Broker) appendMarker(t *topic, n int32, pid int64, epoch int16, commit bool, coordEpoch int32, done func(error)) {
	batch := partition.MarkerBatch(pid, epoch, commit, coordEpoch, time.Now().UnixMilli())
	h, err := partition.ParseHeader(batch)
	if err != nil {
		done(err)
		return
	}
	offsets := t.name == coordinator.OffsetsTopic
	t.parts[n].Append(batch, h, partition.AppendOptions{Acks: partition.AcksAll}, func(res partition.AppendResult) {
		if res.Err != nil || !offsets {
			done(res.Err)
			return
		}
		// The group coordinator applies or drops the transaction's offsets
		// before the marker counts as written, so that the transaction's
		// end is answered after its offsets show.
		if !b.goFunc(func() {
			b.groups.TxnEnded(n, pid, commit)
			done(nil)
		}) {
			done(partition.ErrClosed)
		}
	})
}

// peerClient is a Kafka client of the other brokers.
type peerClient struct {
	b    *Broker
	once sync.Once
	cl   *kgo.Client
	err  error
}

// client returns the client, made on first use.
func (pc *peerClient) client() (*kgo.Client, error) {
	pc.once.Do(func() {
		var seeds []string
		for _, p := range pc.b.peers() {
			if p.ID != pc.b.cfg.NodeID {
				seeds = append(seeds, p.Addr)
			}
		}
		pc.cl, pc.err = kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ClientID("pubg1-broker"),
			kgo.RetryTimeout(5*time.Second), kgo.MetadataMinAge(250*time.Millisecond))
	})
	return pc.cl, pc.err
}

func (pc *peerClient) close() {
	if pc == nil {
		return
	}
	pc.once.Do(func() {}) // no client after this
	if pc.cl != nil {
		pc.cl.Close()
	}
}

// markerFailure is a partition whose marker was not written.
type markerFailure struct {
	tp  coordinator.TopicPartition
	err error
}

// writeMarkers sends a WriteTxnMarkers request for tps to broker leader
// and returns the partitions that did not take the marker.
func (pc *peerClient) writeMarkers(ctx context.Context, leader int32, r coordinator.MarkerRequest, tps []coordinator.TopicPartition) []markerFailure {
	failAll := func(err error) []markerFailure {
		out := make([]markerFailure, len(tps))
		for i, tp := range tps {
			out[i] = markerFailure{tp, err}
		}
		return out
	}
	cl, err := pc.client()
	if err != nil {
		return failAll(err)
	}
	req := kmsg.NewPtrWriteTxnMarkersRequest()
	m := kmsg.NewWriteTxnMarkersRequestMarker()
	m.ProducerID, m.ProducerEpoch, m.Committed, m.CoordinatorEpoch = r.ProducerID, r.Epoch, r.Commit, r.CoordinatorEpoch
	byTopic := make(map[string]int)
	for _, tp := range tps {
		i, ok := byTopic[tp.Topic]
		if !ok {
			i = len(m.Topics)
			byTopic[tp.Topic] = i
			mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
			mt.Topic = tp.Topic
			m.Topics = append(m.Topics, mt)
		}
		m.Topics[i].Partitions = append(m.Topics[i].Partitions, tp.Partition)
	}
	req.Markers = append(req.Markers, m)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kresp, err := cl.Broker(int(leader)).Request(rctx, req)
	if err != nil {
		return failAll(fmt.Errorf("WriteTxnMarkers to broker %d: %w", leader, err))
	}
	resp := kresp.(*kmsg.WriteTxnMarkersResponse)
	ok := make(map[coordinator.TopicPartition]error)
	for _, rm := range resp.Markers {
		for _, rt := range rm.Topics {
			for _, rp := range rt.Partitions {
				ok[coordinator.TopicPartition{Topic: rt.Topic, Partition: rp.Partition}] = kerr.ErrorForCode(rp.ErrorCode)
			}
		}
	}
	var out []markerFailure
	for _, tp := range tps {
		err, answered := ok[tp]
		switch {
		case !answered:
			out = append(out, markerFailure{tp, fmt.Errorf("broker %d did not answer for %s-%d", leader, tp.Topic, tp.Partition)})
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			// Deleted meanwhile: nothing to end.
		case err != nil:
			out = append(out, markerFailure{tp, err})
		}
	}
	return out
}

// verifyTxn asks the coordinator of the produce request's transactional ID
// whether partition n of topic belongs to the producer's transaction, and
// calls done with nil if it does, or with the error Produce answers. From
// Produce v12 (transactions version 2) the partition is added to the
// transaction instead.
func (b *Broker) verifyTxn(r *kmsg.ProduceRequest, topic string, n int32, h partition.BatchHeader, done func(error)) {
	notInTxn := kerr.InvalidTxnState // what clients before Produce v11 know
	if r.Version >= 11 {
		notInTxn = kerr.TransactionAbortable
	}
	answer := func(err error) {
		switch {
		case errors.Is(err, kerr.TransactionAbortable):
			err = fmt.Errorf("%w: %s-%d is not in the producer's transaction", notInTxn, topic, n)
		case errors.Is(err, kerr.ProducerFenced):
			err = fmt.Errorf("%w: %w", kerr.InvalidProducerEpoch, err) // what producers expect
		}
		done(err)
	}
	if r.TransactionID == nil {
		answer(fmt.Errorf("%w: a transactional batch in a request without a transactional ID", kerr.InvalidTxnState))
		return
	}
	tp := coordinator.TopicPartition{Topic: topic, Partition: n}
	b.txnPartition(*r.TransactionID, h.ProducerID, h.ProducerEpoch, tp, r.Version < 12, answer)
}

// txnPartition asks the coordinator of transactional ID id, here or on
// another broker, to add tp to the producer's transaction, or with
// verifyOnly only whether it is in it; done gets the answer.
func (b *Broker) txnPartition(id string, pid int64, epoch int16, tp coordinator.TopicPartition, verifyOnly bool, done func(error)) {
	mb, err := b.internalLeader(coordinator.TxnStateTopic, b.txns.PartitionFor(id))
	if err != nil {
		done(err)
		return
	}
	if mb.NodeID != b.cfg.NodeID {
		if !b.goFunc(func() { done(b.peerClient.addToTxn(b.ctx, mb.NodeID, id, pid, epoch, tp, verifyOnly)) }) {
			done(coordinator.ErrCoordinatorNotAvailable)
		}
		return
	}
	if !verifyOnly {
		b.txns.AddPartitions(id, pid, epoch, []coordinator.TopicPartition{tp}, done)
		return
	}
	res, err := b.txns.Verify(id, pid, epoch, []coordinator.TopicPartition{tp})
	if err == nil {
		err = res[tp]
	}
	done(err)
}

// addToTxn sends a broker's AddPartitionsToTxn (v4+) for one partition to
// the coordinator broker of transactional ID id.
func (pc *peerClient) addToTxn(ctx context.Context, coord int32, id string, pid int64, epoch int16, tp coordinator.TopicPartition, verifyOnly bool) error {
	cl, err := pc.client()
	if err != nil {
		return fmt.Errorf("%w: %w", coordinator.ErrCoordinatorNotAvailable, err)
	}
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 4
	txn := kmsg.NewAddPartitionsToTxnRequestTransaction()
	txn.TransactionalID, txn.ProducerID, txn.ProducerEpoch, txn.VerifyOnly = id, pid, epoch, verifyOnly
	txn.Topics = []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: tp.Topic, Partitions: []int32{tp.Partition}}}
	req.Transactions = append(req.Transactions, txn)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kresp, err := cl.Broker(int(coord)).Request(rctx, req)
	if err != nil {
		return fmt.Errorf("%w: asking broker %d: %w", coordinator.ErrCoordinatorNotAvailable, coord, err)
	}
	resp := kresp.(*kmsg.AddPartitionsToTxnResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	for _, rt := range resp.Transactions {
		for _, t := range rt.Topics {
			for _, p := range t.Partitions {
				if t.Topic == tp.Topic && p.Partition == tp.Partition {
					return kerr.ErrorForCode(p.ErrorCode)
				}
			}
		}
	}
	return fmt.Errorf("%w: broker %d did not answer for %s-%d", coordinator.ErrCoordinatorNotAvailable, coord, tp.Topic, tp.Partition)
}

// txnVerifier keeps a producer's transactional batches for a partition in
// order while the first of its transaction there is being verified: the
// batches behind it (a producer pipelines up to five per partition) wait
// for the answer and are appended after it, as their sequence numbers
// require.
type txnVerifier struct {
	mu       sync.Mutex
	inflight map[verifyKey][]func(error)
}

type verifyKey struct {
	p   partition.Partition
	pid int64
}

// append calls then with nil once the batch of producer pid may be appended
// to p, in the order the batches came, or with the error that refuses it;
// verify is how the first batch of a transaction is checked.
func (v *txnVerifier) append(p partition.Partition, pid int64, then func(error), verify func(done func(error))) {
	k := verifyKey{p, pid}
	v.mu.Lock()
	if q, ok := v.inflight[k]; ok {
		v.inflight[k] = append(q, then)
		v.mu.Unlock()
		return
	}
	if p.TxnOpen(pid) {
		v.mu.Unlock()
		then(nil)
		return
	}
	if v.inflight == nil {
		v.inflight = make(map[verifyKey][]func(error))
	}
	v.inflight[k] = []func(error){then}
	v.mu.Unlock()
	verify(func(err error) {
		// Under the lock, so that a batch arriving meanwhile either waits
		// in the queue or comes after every queued one.
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, f := range v.inflight[k] {
			f(err)
		}
		delete(v.inflight, k)
	})
}
