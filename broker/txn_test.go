package broker_test

import (
	"testing"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnProducer is a transactional producer driven by hand.
type txnProducer struct {
	t     *testing.T
	c     *ktest.Conn
	id    string
	pid   int64
	epoch int16
	seq   int32
}

func newTxnProducer(t *testing.T, c *ktest.Conn, id string) *txnProducer {
	t.Helper()
	findTxnCoordinator(t, c, id, 1)
	resp := initProducerID(t, c, 4, ptr(id))
	if resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %s", errName(resp.ErrorCode))
	}
	return &txnProducer{t: t, c: c, id: id, pid: resp.ProducerID, epoch: resp.ProducerEpoch}
}

func (p *txnProducer) addPartitions(topic string, parts ...int32) int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 3
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = p.id, p.pid, p.epoch
	req.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: topic, Partitions: parts}}
	resp := p.c.Do(req).(*kmsg.AddPartitionsToTxnResponse)
	return resp.Topics[0].Partitions[0].ErrorCode
}

func (p *txnProducer) produce(version int16, topic string, part int32, values ...string) kmsg.ProduceResponseTopicPartition {
	b := makeBatch(p.t, batchOpts{idempotent: true, producerID: p.pid, producerEpoch: p.epoch, sequence: p.seq, attrs: 0x10}, values...)
	req := produceReq(version, -1, topic, [16]byte{}, part, b)
	req.TransactionID = ptr(p.id)
	resp := p.c.Do(req).(*kmsg.ProduceResponse)
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode == 0 {
		p.seq += int32(len(values))
	}
	return sp
}

func (p *txnProducer) end(commit bool) int16 {
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = 3
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = p.id, p.pid, p.epoch, commit
	return p.c.Do(req).(*kmsg.EndTxnResponse).ErrorCode
}

// TestTxnProduceVerification: a partition leader takes the first
// transactional batch of a producer only once the coordinator confirms the
// partition is in its transaction (KIP-890), so that a batch arriving after
// its transaction ended cannot open one nobody would end; EndTxn answers
// as Kafka's coordinator does in each state.
func TestTxnProduceVerification(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	const topic = "verified"
	createTopic(t, c, topic, 2)
	p := newTxnProducer(t, c, "verify-me")

	for _, tc := range []struct {
		version int16
		want    int16
	}{{9, kerr.InvalidTxnState.Code}, {11, kerr.TransactionAbortable.Code}} {
		if sp := p.produce(tc.version, topic, 0, "not added"); sp.ErrorCode != tc.want {
			t.Errorf("produce v%d to a partition not in a transaction: %s, want %s", tc.version, errName(sp.ErrorCode), errName(tc.want))
		}
	}
	if code := p.end(true); code != kerr.InvalidTxnState.Code {
		t.Errorf("EndTxn without a transaction: %s, want INVALID_TXN_STATE", errName(code))
	}
	if code := p.addPartitions(topic, 0); code != 0 {
		t.Fatalf("AddPartitionsToTxn: %s", errName(code))
	}
	if code := p.addPartitions("no-such-topic", 0); code != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("AddPartitionsToTxn of an unknown topic: %s", errName(code))
	}
	if sp := p.produce(9, topic, 0, "a", "b"); sp.ErrorCode != 0 {
		t.Fatalf("produce in the transaction: %s", errName(sp.ErrorCode))
	}
	if sp := p.produce(9, topic, 1, "elsewhere"); sp.ErrorCode != kerr.InvalidTxnState.Code {
		t.Errorf("produce to a partition not added: %s, want INVALID_TXN_STATE", errName(sp.ErrorCode))
	}
	if code := p.end(true); code != 0 {
		t.Fatalf("EndTxn commit: %s", errName(code))
	}
	if code := p.end(true); code != 0 {
		t.Errorf("EndTxn commit retried: %s, want success", errName(code))
	}
	if code := p.end(false); code != kerr.InvalidTxnState.Code {
		t.Errorf("EndTxn abort after the commit: %s, want INVALID_TXN_STATE", errName(code))
	}
	// A late batch of the ended transaction.
	if sp := p.produce(9, topic, 0, "late"); sp.ErrorCode != kerr.InvalidTxnState.Code {
		t.Errorf("a batch after its transaction ended: %s, want INVALID_TXN_STATE", errName(sp.ErrorCode))
	}
	if lso := listOffsetCommitted(t, c, topic, 0); lso != 3 {
		t.Errorf("read_committed end offset %d, want 3 (two records and the marker)", lso)
	}
	// A fenced producer's transaction calls get PRODUCER_FENCED (older
	// versions: INVALID_PRODUCER_EPOCH).
	stale := *p
	newTxnProducer(t, c, "verify-me")
	if code := stale.addPartitions(topic, 0); code != kerr.ProducerFenced.Code {
		t.Errorf("AddPartitionsToTxn v3 of a fenced producer: %s, want PRODUCER_FENCED", errName(code))
	}
}

// listOffsetCommitted is ListOffsets latest at read_committed.
func listOffsetCommitted(t *testing.T, c *ktest.Conn, topic string, part int32) int64 {
	t.Helper()
	req := listOffsetsReq(5, topic, part, -1)
	req.IsolationLevel = 1
	resp := c.Do(req).(*kmsg.ListOffsetsResponse)
	sp := resp.Topics[0].Partitions[0]
	if sp.ErrorCode != 0 {
		t.Fatalf("ListOffsets: %s", errName(sp.ErrorCode))
	}
	return sp.Offset
}

// TestTxnVersion2: transactions version 2 (KIP-890), finalized in
// ApiVersions: Produce v12 adds its partition to the transaction, EndTxn
// v5 bumps the epoch at every end and says so, a retried end gets the same
// answer, an abort with nothing open is allowed, and the old epoch is
// fenced from then on.
func TestTxnVersion2(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version, av.ClientSoftwareName, av.ClientSoftwareVersion = 3, "test", "1"
	resp := c.Do(av).(*kmsg.ApiVersionsResponse)
	if len(resp.FinalizedFeatures) != 1 || resp.FinalizedFeatures[0].Name != "transaction.version" || resp.FinalizedFeatures[0].MaxVersionLevel != 2 || resp.FinalizedFeaturesEpoch < 0 {
		t.Fatalf("finalized features %+v (epoch %d), want transaction.version 2", resp.FinalizedFeatures, resp.FinalizedFeaturesEpoch)
	}
	const topic = "tv2"
	createTopic(t, c, topic, 1)
	p := newTxnProducer(t, c, "tv2-producer")
	end := func(epoch int16, commit bool) *kmsg.EndTxnResponse {
		req := kmsg.NewPtrEndTxnRequest()
		req.Version = 5
		req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = p.id, p.pid, epoch, commit
		return c.Do(req).(*kmsg.EndTxnResponse)
	}
	if sp := p.produce(12, topic, 0, "x", "y"); sp.ErrorCode != 0 {
		t.Fatalf("produce v12 without AddPartitionsToTxn: %s", errName(sp.ErrorCode))
	}
	old := p.epoch
	r := end(old, true)
	if r.ErrorCode != 0 || r.ProducerID != p.pid || r.ProducerEpoch != old+1 {
		t.Fatalf("EndTxn v5 commit: %s, producer %d epoch %d, want epoch %d", errName(r.ErrorCode), r.ProducerID, r.ProducerEpoch, old+1)
	}
	if r := end(old, true); r.ErrorCode != 0 || r.ProducerEpoch != old+1 {
		t.Errorf("EndTxn v5 commit retried: %s epoch %d", errName(r.ErrorCode), r.ProducerEpoch)
	}
	if r := end(old, false); r.ErrorCode != kerr.InvalidTxnState.Code {
		t.Errorf("EndTxn v5 abort retried after a commit: %s, want INVALID_TXN_STATE", errName(r.ErrorCode))
	}
	if lso := listOffsetCommitted(t, c, topic, 0); lso != 3 {
		t.Errorf("read_committed end offset %d, want 3", lso)
	}
	// The old epoch is fenced in the partition (the marker carried the
	// new one).
	if sp := p.produce(12, topic, 0, "late"); sp.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Errorf("produce at the epoch before the bump: %s, want INVALID_PRODUCER_EPOCH", errName(sp.ErrorCode))
	}
	p.epoch, p.seq = old+1, 0
	if r := end(p.epoch, false); r.ErrorCode != 0 || r.ProducerEpoch != old+2 {
		t.Errorf("EndTxn v5 abort with nothing open: %s epoch %d, want epoch %d", errName(r.ErrorCode), r.ProducerEpoch, old+2)
	}
	if r := end(p.epoch, true); r.ErrorCode != kerr.InvalidTxnState.Code {
		t.Errorf("EndTxn v5 commit retried after the abort: %s, want INVALID_TXN_STATE", errName(r.ErrorCode))
	}
}
