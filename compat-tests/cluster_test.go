package compattests

// Fault injection against a three-broker cluster of real processes: leader
// and follower SIGKILLs under an idempotent acks=all stream, a full
// SIGKILL restart, topic creation with a broker down, a frozen (SIGSTOP)
// leader, and topic operations through a broker that is not the
// controller. The brokers run with the default timings
// (broker.DefaultTimings).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxFailover bounds how long after a leader's SIGKILL every live broker
// must name a new one: the issue asks for "a few seconds"; an election
// takes 1.5 to 3 s here, the report to the metadata group and its spread
// to every broker a little more, and the 2 shared cores add noise.
const maxFailover = 10 * time.Second

// standWindow outlasts every delay after which a replica of a broker with
// the default timings stands for election: a replica that knows no leader
// waits LeaderlessGrace for the live leader the metadata names, and the
// replicas stand in turn, RankDelay apart.
var standWindow = broker.DefaultTimings().LeaderlessGrace + broker.DefaultTimings().RankDelay

// producerOpts are those of every producer here: idempotent (franz-go's
// default), acks=all, default retries, and a delivery timeout generous
// enough to ride out an election.
func producerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	}
}

// TestClusterLeaderKill SIGKILLs the leader of partition 0 while an
// idempotent acks=all producer streams to every partition, restarts it
// later, and checks that every acknowledged record is in the log exactly
// once at its acknowledged offset, as consumed and on every replica's disk.
func TestClusterLeaderKill(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	const topic, partitions = "leader-kill", 3
	created := createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, partitions, 3)
	leaders := c.waitLeadersEverywhere(ctx, topic, partitions, nil)
	checkReplicaSets(t, topic, leaders, 3)

	load := startLoad(c.client(nil, producerOpts()...), topic, loadSpec{
		prefix: "leader-kill", partitions: partitions,
		maxRecords: 30000, maxTime: 20 * time.Second, perTick: 8, tick: 5 * time.Millisecond,
	})
	load.waitAcks(ctx, t, "1,500 acknowledgements before the kill", func(total int, _ map[int32]int) bool { return total >= 1500 })

	// The leaders as of now, in case an election followed the first.
	current := c.newestLeaders(topic)
	victim, oldEpoch := current[0].Leader, current[0].Epoch
	if victim < 1 || victim > clusterSize {
		t.Fatalf("partition 0 has no leader while acknowledgements flow: %+v", current)
	}
	_, before := load.counts()
	killedAt := time.Now()
	c.broker(victim).Kill()
	t.Logf("SIGKILLed broker %d, leader of partition 0 at epoch %d", victim, oldEpoch)
	moved := func(p int32, l partLeader) bool { return p != 0 || l.Epoch > oldEpoch }
	after := c.waitLeaders(ctx, topic, partitions, moved)
	firstSeen := time.Since(killedAt)
	c.waitLeadersEverywhere(ctx, topic, partitions, moved)
	metadataFailover := time.Since(killedAt)
	t.Logf("Metadata names broker %d leader of partition 0 at epoch %d: on the first broker %v after the kill, on every live broker after %v",
		after[0].Leader, after[0].Epoch, firstSeen.Round(time.Millisecond), metadataFailover.Round(time.Millisecond))
	if metadataFailover > maxFailover {
		t.Errorf("clients saw no leader for partition 0 for %v after its leader was killed; the issue asks for a few seconds (limit here %v)", metadataFailover, maxFailover)
	}
	load.waitAcks(ctx, t, "1,000 more acknowledgements on partition 0 with its old leader dead", func(_ int, per map[int32]int) bool {
		return per[0] >= before[0]+1000
	})
	c.waitFenced(ctx, victim, killedAt)

	// As in KRaft, a fenced broker leaves every ISR and is listed offline.
	c.waitReplicaStatus(ctx, topic, partitions, "the killed follower out of the ISR and offline", func(p kmsg.MetadataResponseTopicPartition) bool {
		return !slices.Contains(p.ISR, victim) && len(p.ISR) == 2 && slices.Equal(p.OfflineReplicas, []int32{victim})
	})

	c.broker(victim).Restart()
	c.waitReady(ctx)
	c.waitReplicaStatus(ctx, topic, partitions, "the restarted follower back in the ISR", func(p kmsg.MetadataResponseTopicPartition) bool {
		return len(p.ISR) == 3 && len(p.OfflineReplicas) == 0
	})
	_, before = load.counts()
	load.waitAcks(ctx, t, "1,000 more acknowledgements on every partition after the restart", func(_ int, per map[int32]int) bool {
		for p := range int32(partitions) {
			if per[p] < before[p]+1000 {
				return false
			}
		}
		return true
	})
	acks := load.finish(t)

	gap, gapEnd := ackGap(acks, 0)
	firstAfter, ok := firstAckAfter(acks, 0, killedAt)
	if !ok {
		t.Fatal("no acknowledgement on partition 0 after the kill")
	}
	t.Logf("failover: %d records acknowledged; partition 0: first acknowledgement %v after the kill, longest gap between acknowledgements %v (ended %v after the kill); Metadata showed the new leader after %v",
		len(acks), firstAfter.Sub(killedAt).Round(time.Millisecond), gap.Round(time.Millisecond),
		gapEnd.Sub(killedAt).Round(time.Millisecond), metadataFailover.Round(time.Millisecond))

	log, ends := c.consumeAll(ctx, topic, partitions)
	t.Logf("high watermarks after the stream: %v", ends)
	reportLogProblems(t, "consumed log", checkTopicLog(log, acks, true))
	c.checkReplicas(ctx, topic, [16]byte(created.ID), partitions, log, acks, true)
}

// TestClusterFollowerKill SIGKILLs a broker that leads no partition of the
// topic while a producer streams: writes continue on the other two
// replicas, leadership stays put, and the restarted follower catches up.
func TestClusterFollowerKill(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	const topic, partitions = "follower-kill", 2
	created := createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, partitions, 3)
	leaders := c.waitLeadersEverywhere(ctx, topic, partitions, nil)
	checkReplicaSets(t, topic, leaders, 3)

	load := startLoad(c.client(nil, producerOpts()...), topic, loadSpec{
		prefix: "follower-kill", partitions: partitions,
		maxRecords: 40000, maxTime: 30 * time.Second, perTick: 10, tick: 5 * time.Millisecond,
	})
	load.waitAcks(ctx, t, "1,000 acknowledgements before the kill", func(total int, _ map[int32]int) bool { return total >= 1000 })
	leaders = c.newestLeaders(topic)
	victim := int32(-1)
	for id := int32(1); id <= clusterSize && victim < 0; id++ {
		if leaders[0].Leader != id && leaders[1].Leader != id {
			victim = id
		}
	}
	_, before := load.counts()
	killedAt := time.Now()
	c.broker(victim).Kill()
	t.Logf("SIGKILLed broker %d, a follower of every partition (leaders %d and %d)", victim, leaders[0].Leader, leaders[1].Leader)
	load.waitAcks(ctx, t, "700 more acknowledgements per partition with a follower dead", func(_ int, per map[int32]int) bool {
		return per[0] >= before[0]+700 && per[1] >= before[1]+700
	})
	for p, l := range c.newestLeaders(topic) {
		if l.Leader != leaders[p].Leader || l.Epoch != leaders[p].Epoch {
			t.Errorf("killing follower %d moved partition %d from leader %d epoch %d to %d epoch %d", victim, p, leaders[p].Leader, leaders[p].Epoch, l.Leader, l.Epoch)
		}
	}

	// As in KRaft, a fenced broker leaves every ISR and is listed offline.
	c.waitReplicaStatus(ctx, topic, partitions, "the killed follower out of the ISR and offline", func(p kmsg.MetadataResponseTopicPartition) bool {
		return !slices.Contains(p.ISR, victim) && len(p.ISR) == 2 && slices.Equal(p.OfflineReplicas, []int32{victim})
	})

	c.broker(victim).Restart()
	c.waitReady(ctx)
	c.waitReplicaStatus(ctx, topic, partitions, "the restarted follower back in the ISR", func(p kmsg.MetadataResponseTopicPartition) bool {
		return len(p.ISR) == 3 && len(p.OfflineReplicas) == 0
	})
	_, before = load.counts()
	load.waitAcks(ctx, t, "700 more acknowledgements per partition after the restart", func(_ int, per map[int32]int) bool {
		return per[0] >= before[0]+700 && per[1] >= before[1]+700
	})
	acks := load.finish(t)
	for p := range int32(partitions) {
		gap, end := ackGap(acks, p)
		t.Logf("partition %d: longest gap between acknowledgements %v (ended %v after the kill)", p, gap.Round(time.Millisecond), end.Sub(killedAt).Round(time.Millisecond))
	}

	log, _ := c.consumeAll(ctx, topic, partitions)
	reportLogProblems(t, "consumed log", checkTopicLog(log, acks, true))
	c.checkReplicas(ctx, topic, [16]byte(created.ID), partitions, log, acks, true)
}

// waitReplicaStatus polls every live broker's Metadata until each
// partition of topic satisfies ok.
func (c *cluster) waitReplicaStatus(ctx context.Context, topic string, partitions int32, what string, ok func(kmsg.MetadataResponseTopicPartition) bool) {
	c.t.Helper()
	var last string
	done := ktest.Until(ctx, pollEvery, func() bool {
		for _, id := range c.liveIDs() {
			md, err := metadataOf(c.broker(id).Addr(), topic)
			if err != nil || len(md.Topics) != 1 || len(md.Topics[0].Partitions) != int(partitions) {
				last = fmt.Sprintf("broker %d: %v", id, err)
				return false
			}
			for _, p := range md.Topics[0].Partitions {
				if !ok(p) {
					last = fmt.Sprintf("broker %d: partition %d ISR %v offline %v", id, p.Partition, p.ISR, p.OfflineReplicas)
					return false
				}
			}
		}
		return true
	})
	if !done {
		c.t.Fatalf("waiting for %s: %s", what, last)
	}
}

// TestClusterFullRestart SIGKILLs all three brokers after acknowledged
// writes, restarts them, and checks that everything acknowledged is read
// back and that new writes, from the old idempotent producer and a new
// one, continue the offsets densely.
func TestClusterFullRestart(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 2*time.Minute)
	const topic, partitions = "full-restart", 3
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, partitions, 3)
	c.waitLeadersEverywhere(ctx, topic, partitions, nil)
	oldProducer := c.client(nil, producerOpts()...)
	acks := produceAcked(ctx, t, oldProducer, topic, "before-restart", 3000, partitions, -1)
	leaders := c.newestLeaders(topic)

	c.killAll()
	c.restartAll(ctx)
	c.waitLeadersEverywhere(ctx, topic, partitions, newerThan(leaders))

	log, ends := c.consumeAll(ctx, topic, partitions)
	reportLogProblems(t, "log after the restart", checkTopicLog(log, acks, true))
	for p := range int32(partitions) {
		if ends[p] != 1000 {
			t.Errorf("partition %d ends at %d after the restart, want 1000", p, ends[p])
		}
	}

	more := produceAcked(ctx, t, oldProducer, topic, "old-producer-after-restart", 1500, partitions, -1)
	more = append(more, produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "new-producer-after-restart", 1500, partitions, -1)...)
	for _, a := range more {
		if a.Offset < ends[a.Partition] {
			t.Errorf("record %q written after the restart was acknowledged at partition %d offset %d, below the end %d before it", a.Value, a.Partition, a.Offset, ends[a.Partition])
			break
		}
	}
	all := append(slices.Clone(acks), more...)
	log, ends = c.consumeAll(ctx, topic, partitions)
	reportLogProblems(t, "log after writing on", checkTopicLog(log, all, true))
	for p := range int32(partitions) {
		if ends[p] != 2000 {
			t.Errorf("partition %d ends at %d, want 2000", p, ends[p])
		}
	}
}

// TestClusterCreateTopicWithBrokerDown SIGKILLs the metadata controller,
// creates a replication-factor-3 topic through a live broker, uses it,
// restarts the dead broker and checks that it caught up: with another
// broker then killed, acks=all writes need it, and its disk holds the log.
func TestClusterCreateTopicWithBrokerDown(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	const topic, partitions = "created-while-down", 2
	m, err := metadataOf(c.broker(1).Addr())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	victim := m.ControllerID
	if victim < 1 || victim > clusterSize {
		victim = 1
	}
	c.broker(victim).Kill()
	t.Logf("SIGKILLed broker %d (metadata controller %d)", victim, m.ControllerID)

	created := createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, partitions, 3)
	leaders := c.waitLeadersEverywhere(ctx, topic, partitions, nil)
	checkReplicaSets(t, topic, leaders, 3)
	for _, id := range c.liveIDs() {
		m, err := metadataOf(c.broker(id).Addr(), topic)
		if err != nil || len(m.Topics) != 1 || m.Topics[0].TopicID != [16]byte(created.ID) {
			t.Errorf("broker %d does not show %s with ID %x: %v %+v", id, topic, created.ID, err, m)
		}
	}
	acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "while-down", 1000, partitions, -1)
	log, _ := c.consumeAll(ctx, topic, partitions)
	reportLogProblems(t, "log with a broker down", checkTopicLog(log, acks, true))

	c.broker(victim).Restart()
	c.waitReady(ctx)
	wctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	if !ktest.Until(wctx, pollEvery, func() bool {
		m, err := metadataOf(c.broker(victim).Addr(), topic)
		return err == nil && len(m.Topics) == 1 && m.Topics[0].ErrorCode == 0 && m.Topics[0].TopicID == [16]byte(created.ID)
	}) {
		t.Fatalf("restarted broker %d does not know topic %s", victim, topic)
	}

	// With one of the others down, victim and the last broker are the only
	// quorum, so an acks=all write succeeds only once victim has the log.
	other := int32(-1)
	for _, id := range c.liveIDs() {
		if id != victim {
			other = id
			break
		}
	}
	c.broker(other).Kill()
	t.Logf("restarted broker %d; SIGKILLed broker %d", victim, other)
	c.waitLeadersEverywhere(ctx, topic, partitions, nil)
	start := time.Now()
	more := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after-rejoin", 1000, partitions, -1)
	t.Logf("1000 acks=all writes with brokers %v took %v", c.liveIDs(), time.Since(start).Round(time.Millisecond))
	all := append(slices.Clone(acks), more...)
	log, _ = c.consumeAll(ctx, topic, partitions)
	reportLogProblems(t, "log after the rejoin", checkTopicLog(log, all, true))
	for p, l := range c.newestLeaders(topic) {
		t.Logf("partition %d is led by broker %d at epoch %d", p, l.Leader, l.Epoch)
	}

	c.broker(other).Restart()
	c.waitReady(ctx)
	c.waitLeaders(ctx, topic, partitions, nil)
	c.checkReplicas(ctx, topic, [16]byte(created.ID), partitions, log, all, true)
}

// TestClusterCreateTopicControllerPaused freezes the metadata controller
// with SIGSTOP and sends CreateTopics to a live broker: the two live
// brokers are a majority, elect a new controller within seconds, and must
// create the topic, as they do with the controller dead.
func TestClusterCreateTopicControllerPaused(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 2*time.Minute)
	const topic = "created-controller-paused"
	m, err := metadataOf(c.broker(1).Addr())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	ctrl := m.ControllerID
	if ctrl < 1 || ctrl > clusterSize {
		t.Fatalf("Metadata names controller %d", ctrl)
	}
	via := int32(1)
	if via == ctrl {
		via = 2
	}
	conn, err := dialPinned(c.broker(via).Addr())
	if err != nil {
		t.Fatalf("connecting to broker %d: %v", via, err)
	}
	defer conn.Close()
	c.pause(ctrl)
	pausedAt := time.Now()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.SetVersion(5)
	req.TimeoutMillis = 30000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 3
	req.Topics = append(req.Topics, rt)
	corr, err := conn.WriteRequest(req)
	if err != nil {
		t.Fatalf("sending CreateTopics to broker %d: %v", via, err)
	}
	resp, err := conn.Await(req, corr, 45*time.Second)
	took := time.Since(pausedAt)
	if err != nil {
		t.Fatalf("CreateTopics to broker %d with controller %d frozen: %v after %v", via, ctrl, err, took)
	}
	st := resp.(*kmsg.CreateTopicsResponse).Topics[0]
	t.Logf("controller %d frozen; CreateTopics through broker %d answered %s after %v", ctrl, via, outcome(nil, st.ErrorCode), took.Round(time.Millisecond))
	if st.ErrorCode != 0 || took > maxFailover {
		msg := ""
		if st.ErrorMessage != nil {
			msg = *st.ErrorMessage
		}
		t.Fatalf("CreateTopics through live broker %d with the controller %d frozen answered %s (%s) after %v; want success within %v (a new controller is elected in seconds)",
			via, ctrl, outcome(nil, st.ErrorCode), msg, took.Round(time.Millisecond), maxFailover)
	}
	leaders := c.waitLeadersEverywhere(ctx, topic, 1, nil)
	checkReplicaSets(t, topic, leaders, 3)
	acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "controller-paused", 100, 1, -1)
	log, _ := c.consumeAll(ctx, topic, 1)
	reportLogProblems(t, "log with the controller frozen", checkTopicLog(log, acks, true))
	c.resume(ctrl)
}

// TestClusterPausedLeader freezes a partition leader with SIGSTOP: an
// acks=-1 Produce sent to it must not be acknowledged, the other two elect
// a leader and take writes, the old leader steps down once thawed, and
// nothing it was sent during the pause is in the log unless committed.
func TestClusterPausedLeader(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	const topic = "paused-leader"
	const pausedValue = "written-to-the-frozen-leader"
	created := createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	leaders := c.waitLeadersEverywhere(ctx, topic, 1, nil)
	old, oldEpoch := leaders[0].Leader, leaders[0].Epoch
	acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "before-pause", 200, 1, -1)

	// A client connected to the leader before it froze.
	conn, err := dialPinned(c.broker(old).Addr())
	if err != nil {
		t.Fatalf("connecting to leader %d: %v", old, err)
	}
	defer conn.Close()
	m, err := metadataOf(c.broker(old).Addr())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	c.pause(old)
	pausedAt := time.Now()
	t.Logf("SIGSTOPped broker %d, leader of the partition at epoch %d (metadata controller: %d)", old, oldEpoch, m.ControllerID)
	batch := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte(pausedValue)}}.build()
	frozenProduce := produceRequest(9, topicRef{name: topic}, 0, batch)
	frozenCorr, err := conn.WriteRequest(frozenProduce)
	if err != nil {
		t.Fatalf("sending Produce to the frozen leader: %v", err)
	}
	if resp, err := conn.Await(frozenProduce, frozenCorr, 3*time.Second); !errors.Is(err, ktest.ErrNoAnswer) {
		t.Fatalf("frozen broker answered Produce: %v %+v", err, resp)
	}

	moved := func(_ int32, l partLeader) bool { return l.Leader != old && l.Epoch > oldEpoch }
	elected := c.waitLeaders(ctx, topic, 1, moved)
	firstSeen := time.Since(pausedAt)
	c.waitLeadersEverywhere(ctx, topic, 1, moved)
	t.Logf("Metadata names broker %d leader at epoch %d: on the first broker %v after the pause, on both live brokers after %v",
		elected[0].Leader, elected[0].Epoch, firstSeen.Round(time.Millisecond), time.Since(pausedAt).Round(time.Millisecond))
	start := time.Now()
	during := produceAcked(ctx, t, c.client(nil, append(producerOpts(), kgo.RequestTimeoutOverhead(3*time.Second))...), topic, "during-pause", 200, 1, -1)
	t.Logf("200 writes to the new leader took %v", time.Since(start).Round(time.Millisecond))

	c.resume(old)
	resumedAt := time.Now()
	var absent []string
	all := append(slices.Clone(acks), during...)
	resp, err := conn.Await(frozenProduce, frozenCorr, 15*time.Second)
	switch {
	case err != nil:
		t.Logf("the Produce sent during the pause got no answer after SIGCONT: %v", err)
	default:
		pr := resp.(*kmsg.ProduceResponse)
		if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
			t.Fatalf("Produce of one partition answered %d topics", len(pr.Topics))
		}
		rp := pr.Topics[0].Partitions[0]
		if rp.ErrorCode == 0 {
			// Only acceptable if the write really is committed there;
			// the log checks below decide.
			t.Logf("the old leader acknowledged the Produce sent during the pause at offset %d", rp.BaseOffset)
			all = append(all, ackedRecord{Partition: 0, Offset: rp.BaseOffset, Value: pausedValue})
		} else {
			t.Logf("the old leader answered the Produce sent during the pause with %v, %v after SIGCONT", kerr.ErrorForCode(rp.ErrorCode), time.Since(resumedAt).Round(time.Millisecond))
			absent = append(absent, pausedValue)
		}
	}

	// The thawed leader steps down: it refuses ListOffsets and its own
	// Metadata names the new leader.
	var last string
	wctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	if !ktest.Until(wctx, pollEvery, func() bool {
		code, _, err := listOffsetsOf(c.broker(old).Addr(), topic, 0)
		if err != nil || code != kerr.NotLeaderForPartition.Code {
			last = "ListOffsets: " + outcome(err, code)
			return false
		}
		ls, err := c.leadersFrom(old, topic)
		if err != nil || ls[0].Leader == old {
			last = "its Metadata still names itself"
			return false
		}
		return true
	}) {
		t.Errorf("thawed broker %d did not step down: %s", old, last)
	}
	t.Logf("old leader %d stepped down %v after SIGCONT", old, time.Since(resumedAt).Round(time.Millisecond))

	all = append(all, produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after-resume", 200, 1, -1)...)
	log, _ := c.consumeAll(ctx, topic, 1)
	reportLogProblems(t, "log after the pause", checkTopicLog(log, all, true, absent...))
	c.checkReplicas(ctx, topic, [16]byte(created.ID), 1, log, all, true, absent...)
}

// TestClusterPausedFollower takes a broker away for longer than its peers
// wait before they count it down (frozen with SIGSTOP, or SIGKILLed), brings
// it back, and checks that it disturbs nothing it did not lead: on its
// return it must not stand for the leadership of partitions whose leaders
// it did not hear from meanwhile. Every partition led elsewhere, of a topic
// and of __consumer_offsets, keeps its leader and epoch, and writes go on.
func TestClusterPausedFollower(t *testing.T) {
	for _, mode := range []string{"frozen", "restarted"} {
		t.Run(mode, func(t *testing.T) {
			c := startCluster(t)
			ctx := testContext(t, 3*time.Minute)
			const topic = "paused-follower"
			createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 6, 3)
			c.waitLeadersEverywhere(ctx, topic, 6, nil)
			acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "before", 300, 6, -1)
			const victim = int32(2)
			topics := []string{topic, "__consumer_offsets"}
			before := map[string]map[int32]partLeader{}
			for _, tp := range topics {
				ls, err := c.leadersFrom(1, tp)
				if err != nil {
					t.Fatalf("leaders of %s: %v", tp, err)
				}
				before[tp] = c.waitLeadersEverywhere(ctx, tp, int32(len(ls)), nil)
			}

			stoppedAt := time.Now()
			if mode == "frozen" {
				c.pause(victim)
			} else {
				c.broker(victim).Kill()
			}
			c.waitFenced(ctx, victim, stoppedAt) // its peers count it down
			for _, tp := range topics {
				c.waitLeadersEverywhere(ctx, tp, int32(len(before[tp])), nil) // what it led has moved
			}
			if mode == "frozen" {
				c.resume(victim)
			}
			c.restartAll(ctx) // restarts a killed victim; waits until every broker is back in Metadata
			// Nothing to poll for: leadership must not move while every
			// replica's reason to stand runs out.
			time.Sleep(standWindow)
			for _, tp := range topics {
				after := c.waitLeadersEverywhere(ctx, tp, int32(len(before[tp])), nil)
				moved := 0
				for p, l := range before[tp] {
					if l.Leader == victim {
						continue
					}
					if a := after[p]; a.Leader != l.Leader || a.Epoch != l.Epoch {
						moved++
						t.Errorf("%s partition %d: led by %d at epoch %d before broker %d left, by %d at epoch %d after it came back",
							tp, p, l.Leader, l.Epoch, victim, a.Leader, a.Epoch)
					}
				}
				t.Logf("%s: %d of %d partitions led elsewhere than broker %d changed leadership", tp, moved, len(before[tp]), victim)
			}
			acks = append(acks, produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after", 300, 6, -1)...)
			log, _ := c.consumeAll(ctx, topic, 6)
			reportLogProblems(t, "log after the broker came back", checkTopicLog(log, acks, true))
		})
	}
}
