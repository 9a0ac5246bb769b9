package compattests

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceTimeoutPerPartition: a produce request whose partitions are
// led by one broker, one of which cannot commit (its followers are frozen
// with SIGSTOP), is answered once its TimeoutMillis (300 ms, less than the
// failure detector needs to find the followers down) has passed: the
// healthy partition with its offset, the stuck one with REQUEST_TIMED_OUT,
// as Kafka answers. Once the followers are back, the idempotent
// producer's retry of the timed-out batch is answered, and the partition
// holds that batch exactly once, whether or not the timed-out write
// committed after all.
func TestProduceTimeoutPerPartition(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	adm := kadm.NewClient(c.client(nil))
	const stuck, healthy = "stuck", "healthy"
	createClusterTopic(ctx, t, adm, stuck, 1, 3)
	createClusterTopic(ctx, t, adm, healthy, 3, 1)
	leader := c.waitLeadersEverywhere(ctx, stuck, 1, nil)[0].Leader
	var local int32 = -1 // a partition of healthy on the same broker
	for p, l := range c.waitLeadersEverywhere(ctx, healthy, 3, nil) {
		if l.Leader == leader {
			local = p
		}
	}
	if local < 0 {
		t.Fatalf("no partition of %s is on broker %d, which leads %s", healthy, leader, stuck)
	}

	conn := dialRaw(t, c.broker(leader).Addr())
	init := initIdempotent(t, conn)
	batch := batchSpec{producerID: init.ProducerID, producerEpoch: init.ProducerEpoch, timestamp: time.Now(),
		values: [][]byte{[]byte("timed-out-0"), []byte("timed-out-1")}}.build()
	req := func(parts map[string][2]any) *kmsg.ProduceRequest {
		r := kmsg.NewPtrProduceRequest()
		r.SetVersion(9)
		r.Acks, r.TimeoutMillis = -1, 300
		for _, name := range []string{stuck, healthy} {
			pb, ok := parts[name]
			if !ok {
				continue
			}
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = name
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition, rp.Records = pb[0].(int32), pb[1].([]byte)
			rt.Partitions = append(rt.Partitions, rp)
			r.Topics = append(r.Topics, rt)
		}
		return r
	}
	answers := func(resp *kmsg.ProduceResponse) map[string]kmsg.ProduceResponseTopicPartition {
		out := map[string]kmsg.ProduceResponseTopicPartition{}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				out[rt.Topic] = rp
			}
		}
		return out
	}

	c.eachBut(leader, c.pause)
	plain := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte("healthy")}}.build()
	got := answers(conn.Do(req(map[string][2]any{stuck: {int32(0), batch}, healthy: {local, plain}})).(*kmsg.ProduceResponse))
	if a := got[healthy]; a.ErrorCode != 0 || a.BaseOffset != 0 {
		t.Errorf("the healthy partition: %v at offset %d, want offset 0", kerr.ErrorForCode(a.ErrorCode), a.BaseOffset)
	}
	if a := got[stuck]; a.ErrorCode != kerr.RequestTimedOut.Code || a.BaseOffset != -1 {
		t.Errorf("the partition that cannot commit: %v at offset %d, want REQUEST_TIMED_OUT", kerr.ErrorForCode(a.ErrorCode), a.BaseOffset)
	}

	c.eachBut(leader, c.resume)
	c.waitReady(ctx)
	retried := c.produceToLeader(ctx, stuck, func(conn *ktest.Conn) kmsg.ProduceResponseTopicPartition {
		return answers(conn.Do(req(map[string][2]any{stuck: {int32(0), batch}})).(*kmsg.ProduceResponse))[stuck]
	})
	if retried.ErrorCode != 0 {
		t.Fatalf("the retry of the timed-out batch: %v", kerr.ErrorForCode(retried.ErrorCode))
	}
	log, _ := c.consumeAll(ctx, stuck, 1)
	var values []string
	for _, off := range slices.Sorted(maps.Keys(log[0])) {
		values = append(values, fmt.Sprintf("%s@%d", log[0][off], off))
	}
	want := []string{fmt.Sprintf("timed-out-0@%d", retried.BaseOffset), fmt.Sprintf("timed-out-1@%d", retried.BaseOffset+1)}
	if !slices.Equal(values, want) {
		t.Errorf("the partition holds %v, want the batch once: %v", values, want)
	}
}

// TestLeaderWithoutQuorumStepsAside: a partition leader whose followers'
// brokers are both frozen (SIGSTOP) cannot commit; once its failure
// detector finds them down (about 2 s) it answers NOT_LEADER_FOR_PARTITION,
// for the write waiting to commit and for new ones, well before Raft's
// 10 s lease, so that clients go and find the leader the others elect;
// when they thaw, the partition takes writes again, and the one that
// failed, retried, is in the log once.
func TestLeaderWithoutQuorumStepsAside(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	const topic = "aside"
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	leader := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0].Leader
	conn := dialRaw(t, c.broker(leader).Addr())
	init := initIdempotent(t, conn)
	batch := func(seq int32, v string) []byte {
		return batchSpec{producerID: init.ProducerID, producerEpoch: init.ProducerEpoch, firstSequence: seq, timestamp: time.Now(), values: [][]byte{[]byte(v)}}.build()
	}
	produce := func(conn *ktest.Conn, b []byte) kmsg.ProduceResponseTopicPartition {
		t.Helper()
		req := produceRequest(9, topicRef{name: topic}, 0, b)
		req.TimeoutMillis = 8000 // less than Raft's lease
		return conn.Do(req).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	}
	if a := produce(conn, batch(0, "before")); a.ErrorCode != 0 || a.BaseOffset != 0 {
		t.Fatalf("first write: %v at %d", kerr.ErrorForCode(a.ErrorCode), a.BaseOffset)
	}
	c.eachBut(leader, c.pause)
	if a := produce(conn, batch(1, "cut-off")); a.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("a write to a leader without its quorum: %v, want NOT_LEADER_FOR_PARTITION before the request's 8 s timeout", kerr.ErrorForCode(a.ErrorCode))
	}
	if a := produce(conn, batch(1, "cut-off")); a.ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("another write to a leader without its quorum: %v, want NOT_LEADER_FOR_PARTITION", kerr.ErrorForCode(a.ErrorCode))
	}
	c.eachBut(leader, c.resume)
	retried := c.produceToLeader(ctx, topic, func(conn *ktest.Conn) kmsg.ProduceResponseTopicPartition {
		return produce(conn, batch(1, "cut-off"))
	})
	if retried.ErrorCode != 0 || retried.BaseOffset != 1 {
		t.Fatalf("the retry once the followers are back: %v at %d, want offset 1", kerr.ErrorForCode(retried.ErrorCode), retried.BaseOffset)
	}
	log, _ := c.consumeAll(ctx, topic, 1)
	if fmt.Sprint(log[0]) != fmt.Sprint(map[int64]string{0: "before", 1: "cut-off"}) {
		t.Errorf("the partition holds %v, want before@0 and cut-off@1", log[0])
	}
}

// initIdempotent gets an idempotent producer ID and epoch on conn.
func initIdempotent(t *testing.T, conn *ktest.Conn) *kmsg.InitProducerIDResponse {
	t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.SetVersion(4)
	req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch = -1, -1, -1
	resp := conn.Do(req).(*kmsg.InitProducerIDResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("InitProducerId: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp
}

// eachBut calls f with every broker's ID but except's.
func (c *cluster) eachBut(except int32, f func(id int32)) {
	for id := int32(1); id <= int32(c.size); id++ {
		if id != except {
			f(id)
		}
	}
}

// produceToLeader sends a produce with send to whichever broker leads
// partition 0 of topic, again every 200 ms until it is accepted or
// clusterWait has passed, and returns the last answer.
func (c *cluster) produceToLeader(ctx context.Context, topic string, send func(*ktest.Conn) kmsg.ProduceResponseTopicPartition) kmsg.ProduceResponseTopicPartition {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0].Leader
		a := send(dialRaw(c.t, c.broker(l).Addr()))
		if a.ErrorCode == 0 || time.Now().After(deadline) {
			return a
		}
		c.t.Logf("produce to broker %d: %v; retrying", l, kerr.ErrorForCode(a.ErrorCode))
		time.Sleep(200 * time.Millisecond)
	}
}
