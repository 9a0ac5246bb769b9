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

func outcome(err error, code int16) string {
	if err != nil {
		return err.Error()
	}
	if e := kerr.ErrorForCode(code); e != nil {
		return e.Error()
	}
	return "no error"
}

// TestClusterTopicOperations sends CreateTopics, IncrementalAlterConfigs
// and DeleteTopics to a broker that is not the controller and checks the
// effect on every broker and after a full restart; then Produce, Fetch and
// ListOffsets to a follower, and OffsetForLeaderEpoch after a leader change.
func TestClusterTopicOperations(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 3*time.Minute)
	m, err := metadataOf(c.broker(1).Addr())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	via := int32(1)
	if m.ControllerID == via {
		via = 2
	}
	t.Logf("controller is broker %d; sending topic operations to broker %d", m.ControllerID, via)
	cl := c.client(nil)
	// pinned sends req to one broker, again while the connection fails
	// (brokers restart under the client).
	pinned := func(id int32, req kmsg.Request) kmsg.Response {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, clusterWait)
		defer cancel()
		var resp kmsg.Response
		var err error
		ktest.Until(rctx, pollEvery, func() bool {
			resp, err = cl.Broker(int(id)).Request(rctx, req)
			return err == nil
		})
		if err != nil {
			t.Fatalf("%s to broker %d: %v", kmsg.NameForKey(req.Key()), id, err)
		}
		return resp
	}

	create := kmsg.NewPtrCreateTopicsRequest()
	create.TimeoutMillis = 15000
	for _, spec := range []struct {
		name       string
		partitions int32
		rf         int16
		retention  string
	}{{"ops-a", 3, 3, "3600000"}, {"ops-b", 1, -1, ""}} {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = spec.name, spec.partitions, spec.rf
		if spec.retention != "" {
			rc := kmsg.NewCreateTopicsRequestTopicConfig()
			rc.Name, rc.Value = "retention.ms", kmsg.StringPtr(spec.retention)
			rt.Configs = append(rt.Configs, rc)
		}
		create.Topics = append(create.Topics, rt)
	}
	ids := make(map[string][16]byte)
	for _, st := range pinned(via, create).(*kmsg.CreateTopicsResponse).Topics {
		if err := kerr.ErrorForCode(st.ErrorCode); err != nil || st.ReplicationFactor != 3 || st.TopicID == [16]byte{} {
			t.Fatalf("creating %s through broker %d: %v (%v), replication factor %d, ID %x", st.Topic, via, err, st.ErrorMessage, st.ReplicationFactor, st.TopicID)
		}
		ids[st.Topic] = st.TopicID
	}
	// Like Kafka's, the answer comes once every new partition has a leader:
	// a client that produces right after finds them.
	leadersNow := func(topic string, want int) {
		t.Helper()
		m, err := metadataOf(c.broker(via).Addr(), topic)
		if err != nil || len(m.Topics) != 1 {
			t.Fatalf("metadata of %s from broker %d: %v", topic, via, err)
		}
		mt := m.Topics[0]
		if len(mt.Partitions) != want {
			t.Errorf("broker %d shows %d partitions of %s, want %d", via, len(mt.Partitions), topic, want)
		}
		for _, p := range mt.Partitions {
			if p.ErrorCode != 0 || p.Leader < 0 {
				t.Errorf("right after it was answered, broker %d shows partition %d of %s with %s, leader %d", via, p.Partition, topic, outcome(nil, p.ErrorCode), p.Leader)
			}
		}
	}
	leadersNow("ops-a", 3)
	leadersNow("ops-b", 1)
	wantTopics := map[string]int{"ops-a": 3, "ops-b": 1}
	c.waitTopicsEverywhere(ctx, wantTopics, ids)
	c.waitConfigsEverywhere(ctx, cl, "ops-a", map[string]string{"retention.ms": "3600000"})

	grow := kmsg.NewPtrCreatePartitionsRequest()
	grow.TimeoutMillis = 15000
	gt := kmsg.NewCreatePartitionsRequestTopic()
	gt.Topic, gt.Count = "ops-b", 3
	grow.Topics = append(grow.Topics, gt)
	for _, r := range pinned(via, grow).(*kmsg.CreatePartitionsResponse).Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("growing ops-b through broker %d: %v (%v)", via, err, r.ErrorMessage)
		}
	}
	leadersNow("ops-b", 3)
	wantTopics["ops-b"] = 3
	c.waitTopicsEverywhere(ctx, wantTopics, ids)

	alter := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, "ops-a"
	for name, value := range map[string]string{"retention.ms": "7200000", "segment.ms": "3600000"} {
		rc := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		rc.Name, rc.Op, rc.Value = name, kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr(value)
		res.Configs = append(res.Configs, rc)
	}
	alter.Resources = append(alter.Resources, res)
	for _, r := range pinned(via, alter).(*kmsg.IncrementalAlterConfigsResponse).Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("altering configs of %s through broker %d: %v (%v)", r.ResourceName, via, err, r.ErrorMessage)
		}
	}
	altered := map[string]string{"retention.ms": "7200000", "segment.ms": "3600000"}
	c.waitConfigsEverywhere(ctx, cl, "ops-a", altered)

	del := kmsg.NewPtrDeleteTopicsRequest()
	del.TimeoutMillis = 15000
	del.TopicNames = []string{"ops-b"}
	dt := kmsg.NewDeleteTopicsRequestTopic()
	dt.Topic = kmsg.StringPtr("ops-b")
	del.Topics = append(del.Topics, dt)
	for _, r := range pinned(via, del).(*kmsg.DeleteTopicsResponse).Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("deleting ops-b through broker %d: %v (%v)", via, err, r.ErrorMessage)
		}
	}
	delete(wantTopics, "ops-b")
	c.waitTopicsEverywhere(ctx, wantTopics, ids)

	c.waitLeadersEverywhere(ctx, "ops-a", 3, nil)
	before := c.newestLeaders("ops-a")
	c.stopAll()
	c.restartAll(ctx)
	t.Log("restarted all brokers")
	c.waitTopicsEverywhere(ctx, wantTopics, ids)
	c.waitConfigsEverywhere(ctx, cl, "ops-a", altered)
	leaders := c.waitLeadersEverywhere(ctx, "ops-a", 3, newerThan(before))

	// Produce, Fetch and ListOffsets to a follower of partition 0.
	lead := leaders[0].Leader
	follower := leaders[0].Replicas[0]
	if follower == lead {
		follower = leaders[0].Replicas[1]
	}
	ref := topicRef{name: "ops-a", id: ids["ops-a"]}
	produceCode := func(id int32, value string) (int16, int64) {
		batch := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte(value)}}.build()
		pr := pinned(id, produceRequest(0, ref, 0, batch)).(*kmsg.ProduceResponse)
		if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
			t.Fatalf("Produce of one partition answered %d topics", len(pr.Topics))
		}
		return pr.Topics[0].Partitions[0].ErrorCode, pr.Topics[0].Partitions[0].BaseOffset
	}
	if code, _ := produceCode(follower, "to-the-follower"); code != kerr.NotLeaderForPartition.Code {
		t.Errorf("Produce to follower %d answered %s, want NOT_LEADER_OR_FOLLOWER", follower, outcome(nil, code))
	}
	// An acks=0 produce has no answer to carry NOT_LEADER_OR_FOLLOWER: the
	// follower closes the connection instead, as Kafka does, so that the
	// client refreshes its metadata. A leader keeps it open.
	zero := func(p int32, value string) *kmsg.ProduceRequest {
		req := produceRequest(9, ref, p, batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte(value)}}.build())
		req.Acks = 0
		return req
	}
	toFollower := dialRaw(t, c.broker(follower).Addr())
	toFollower.Send(zero(0, "acks-0-to-the-follower"))
	toFollower.ExpectClosed()
	toLeader := dialRaw(t, c.broker(leaders[1].Leader).Addr())
	toLeader.Send(zero(1, "acks-0-to-the-leader"))
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(12)
	toLeader.Do(md)
	if code, off := produceCode(lead, "to-the-leader"); code != 0 || off != 0 {
		t.Errorf("Produce to leader %d answered %s at offset %d, want success at 0", lead, outcome(nil, code), off)
	}
	fr := pinned(follower, fetchRequest(0, ref, 0, 0, 0, 0)).(*kmsg.FetchResponse)
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("Fetch from follower %d: want NOT_LEADER_OR_FOLLOWER, got %+v", follower, fr.Topics)
	}
	if code, _, err := listOffsetsOf(c.broker(follower).Addr(), "ops-a", 0); err != nil || code != kerr.NotLeaderForPartition.Code {
		t.Errorf("ListOffsets to follower %d: %s, want NOT_LEADER_OR_FOLLOWER", follower, outcome(err, code))
	}

	// OffsetForLeaderEpoch: the end of the old leader's epoch, asked of the
	// new leader after a change.
	epoch1 := leaders[0].Epoch
	produceAcked(ctx, t, c.client(nil, producerOpts()...), "ops-a", "epoch-one", 100, 3, 0)
	code, end1, err := listOffsetsOf(c.broker(lead).Addr(), "ops-a", 0)
	if err != nil || code != 0 || end1 != 101 {
		t.Fatalf("ListOffsets of partition 0 on leader %d: %s, end %d, want 101", lead, outcome(err, code), end1)
	}
	checkEpochEnd(t, pinned(lead, offsetForLeaderEpochRequest("ops-a", 0, epoch1, epoch1)), fmt.Sprintf("leader %d before the change", lead), 0, epoch1, end1)
	c.broker(lead).Kill()
	elected := c.waitLeadersEverywhere(ctx, "ops-a", 3, func(p int32, l partLeader) bool { return p != 0 || l.Epoch > epoch1 })
	lead2, epoch2 := elected[0].Leader, elected[0].Epoch
	t.Logf("partition 0: leader %d epoch %d, after SIGKILL leader %d epoch %d", lead, epoch1, lead2, epoch2)
	produceAcked(ctx, t, c.client(nil, producerOpts()...), "ops-a", "epoch-two", 50, 3, 0)
	checkEpochEnd(t, pinned(lead2, offsetForLeaderEpochRequest("ops-a", 0, epoch2, epoch1)), "new leader, old epoch", 0, epoch1, end1)
	checkEpochEnd(t, pinned(lead2, offsetForLeaderEpochRequest("ops-a", 0, epoch2, epoch2)), "new leader, its epoch", 0, epoch2, end1+50)
	checkEpochEnd(t, pinned(lead2, offsetForLeaderEpochRequest("ops-a", 0, epoch1, epoch1)), "new leader, fenced current epoch", kerr.FencedLeaderEpoch.Code, -1, -1)
	for _, id := range c.liveIDs() {
		if id != lead2 {
			checkEpochEnd(t, pinned(id, offsetForLeaderEpochRequest("ops-a", 0, epoch2, epoch1)), fmt.Sprintf("follower %d", id), kerr.NotLeaderForPartition.Code, -1, -1)
		}
	}
}

func offsetForLeaderEpochRequest(topic string, partition, current, epoch int32) *kmsg.OffsetForLeaderEpochRequest {
	req := kmsg.NewPtrOffsetForLeaderEpochRequest()
	req.ReplicaID = -1
	rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = partition, current, epoch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// checkEpochEnd checks an OffsetForLeaderEpoch answer; on an error the
// epoch and offset are not compared.
func checkEpochEnd(t *testing.T, resp kmsg.Response, what string, wantCode int16, wantEpoch int32, wantEnd int64) {
	t.Helper()
	r := resp.(*kmsg.OffsetForLeaderEpochResponse)
	if len(r.Topics) != 1 || len(r.Topics[0].Partitions) != 1 {
		t.Errorf("OffsetForLeaderEpoch (%s) answered %d topics", what, len(r.Topics))
		return
	}
	p := r.Topics[0].Partitions[0]
	switch {
	case p.ErrorCode != wantCode:
		t.Errorf("OffsetForLeaderEpoch (%s): %s, want %s", what, outcome(nil, p.ErrorCode), outcome(nil, wantCode))
	case wantCode == 0 && (p.LeaderEpoch != wantEpoch || p.EndOffset != wantEnd):
		t.Errorf("OffsetForLeaderEpoch (%s): epoch %d end %d, want epoch %d end %d", what, p.LeaderEpoch, p.EndOffset, wantEpoch, wantEnd)
	}
}

// waitTopicsEverywhere waits until every live broker's Metadata lists
// exactly the given topics, with their IDs, partition counts and three
// replicas per partition.
func (c *cluster) waitTopicsEverywhere(ctx context.Context, want map[string]int, ids map[string][16]byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var last string
	if !ktest.Until(ctx, pollEvery, func() bool {
		for _, id := range c.liveIDs() {
			m, err := metadataOf(c.broker(id).Addr())
			if err != nil {
				last = err.Error()
				return false
			}
			got := make(map[string]bool)
			for _, mt := range m.Topics {
				name := *mt.Topic
				if mt.IsInternal { // __consumer_offsets, created by the brokers
					continue
				}
				got[name] = true
				n, ok := want[name]
				switch {
				case !ok:
					last = fmt.Sprintf("broker %d lists %s", id, name)
					return false
				case mt.ErrorCode != 0 || mt.TopicID != ids[name] || len(mt.Partitions) != n:
					last = fmt.Sprintf("broker %d shows %s as %+v", id, name, mt)
					return false
				}
				for _, p := range mt.Partitions {
					if len(p.Replicas) != 3 {
						last = fmt.Sprintf("broker %d shows partition %d of %s with replicas %v", id, p.Partition, name, p.Replicas)
						return false
					}
				}
			}
			if len(got) != len(want) {
				last = fmt.Sprintf("broker %d lists %v", id, got)
				return false
			}
		}
		return true
	}) {
		c.t.Fatalf("topics not as wanted on every broker within %v: %s", clusterWait, last)
	}
}

// waitConfigsEverywhere waits until DescribeConfigs of topic, asked of each
// live broker, shows the given values as dynamic topic configs.
func (c *cluster) waitConfigsEverywhere(ctx context.Context, cl *kgo.Client, topic string, want map[string]string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var last string
	if !ktest.Until(ctx, pollEvery, func() bool {
		for _, id := range c.liveIDs() {
			req := kmsg.NewPtrDescribeConfigsRequest()
			res := kmsg.NewDescribeConfigsRequestResource()
			res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeTopic, topic
			req.Resources = append(req.Resources, res)
			rctx, rcancel := context.WithTimeout(ctx, probeTimeout)
			resp, err := cl.Broker(int(id)).Request(rctx, req)
			rcancel()
			if err != nil {
				last = err.Error()
				return false
			}
			dr := resp.(*kmsg.DescribeConfigsResponse)
			if len(dr.Resources) != 1 || dr.Resources[0].ErrorCode != 0 {
				last = fmt.Sprintf("broker %d: DescribeConfigs answered %+v", id, dr.Resources)
				return false
			}
			for name, value := range want {
				found := false
				for _, cfg := range dr.Resources[0].Configs {
					if cfg.Name == name && cfg.Value != nil && *cfg.Value == value && cfg.Source == kmsg.ConfigSourceDynamicTopicConfig {
						found = true
					}
				}
				if !found {
					last = fmt.Sprintf("broker %d does not show %s=%s as a dynamic topic config", id, name, value)
					return false
				}
			}
		}
		return true
	}) {
		c.t.Fatalf("configs of %s not on every broker within %v: %s", topic, clusterWait, last)
	}
}

// TestClusterRestartKnowsTopics restarts a broker of a cluster with many
// topics and asks it for their metadata as soon as it accepts clients:
// like a Kafka broker, it must serve clients only once it has caught up
// with the cluster metadata, never answer that a topic is unknown.
func TestClusterRestartKnowsTopics(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 2*time.Minute)
	adm := kadm.NewClient(c.client(nil))
	var topics []string
	for i := range 40 {
		topics = append(topics, fmt.Sprintf("known-%02d", i))
	}
	resp, err := adm.CreateTopics(ctx, 2, 3, nil, topics...)
	if err != nil {
		t.Fatalf("creating topics: %v", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			t.Fatalf("creating %s: %v", r.Topic, r.Err)
		}
	}
	for _, topic := range topics {
		c.waitLeadersEverywhere(ctx, topic, 2, nil)
	}
	const victim = 3
	c.broker(victim).Kill()
	c.broker(victim).Restart()
	// A restarted broker holds client connections until it has caught
	// up with the cluster metadata, as long as that takes.
	started := time.Now()
	md, err := metadataWithin(c.broker(victim).Addr(), clusterWait, topics...)
	if err != nil {
		t.Fatalf("metadata from the restarted broker: %v", err)
	}
	t.Logf("the restarted broker answered Metadata after %v", time.Since(started).Round(time.Millisecond))
	for _, mt := range md.Topics {
		if mt.ErrorCode != 0 || len(mt.Partitions) != 2 {
			t.Errorf("the restarted broker answers topic %s with error %d and %d partitions", *mt.Topic, mt.ErrorCode, len(mt.Partitions))
		}
	}
	if len(md.Topics) != len(topics) {
		t.Errorf("the restarted broker answered %d topics, want %d", len(md.Topics), len(topics))
	}
}

// TestClusterElectLeaders kills a broker so that its preferred
// partitions are led elsewhere, restarts it, and moves their leadership
// back with ElectLeaders (as kafka-leader-election.sh does), sent to a
// broker that leads none of them, so that the request is forwarded.
func TestClusterElectLeaders(t *testing.T) {
	// Without automatic rebalancing, leadership stays where it moved
	// until ElectLeaders asks for the preferred replicas.
	c := startClusterWith(t, "--no-auto-leader-rebalance")
	ctx := testContext(t, 2*time.Minute)
	const topic, partitions = "elect", 6
	// Make broker 1's preferred partitions (at least) lead elsewhere.
	const victim = 1
	c.displacePreferred(ctx, topic, partitions, victim)
	c.broker(victim).Restart()
	c.waitReady(ctx)
	moved := c.waitLeadersEverywhere(ctx, topic, partitions, nil)
	var wantElected []int32
	for p := range int32(partitions) {
		if !ledByPreferred(p, moved[p]) {
			wantElected = append(wantElected, p)
		}
	}
	if len(wantElected) == 0 {
		t.Fatalf("broker %d is the preferred replica of no partition: %v", victim, moved)
	}
	produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "before-election", 600, partitions, -1)

	// Ask broker 1 itself: it leads none of the partitions it should.
	elect := kadm.NewClient(c.client([]int32{victim}))
	res, err := elect.ElectLeaders(ctx, kadm.ElectPreferredReplica, nil)
	if err != nil {
		t.Fatalf("ElectLeaders for every partition: %v", err)
	}
	for p := range int32(partitions) {
		r, ok := res[topic][p]
		switch {
		case slices.Contains(wantElected, p) && (!ok || r.Err != nil):
			t.Errorf("partition %d (led by %d, preferred %d): result %+v (present %v), want success", p, moved[p].Leader, moved[p].Replicas[0], r, ok)
		case !slices.Contains(wantElected, p) && ok:
			t.Errorf("partition %d already led by its preferred replica is in the answer for all partitions: %+v", p, r)
		}
	}
	c.waitLeadersEverywhere(ctx, topic, partitions, ledByPreferred)

	// A second election is not needed; unknown partitions and unclean
	// elections get Kafka's answers.
	set := kadm.TopicsSet{topic: {0: {}}, "no-such-topic": {0: {}}}
	set.Add(topic, partitions)
	res, err = elect.ElectLeaders(ctx, kadm.ElectPreferredReplica, set)
	if err != nil {
		t.Fatalf("ElectLeaders for named partitions: %v", err)
	}
	for _, want := range []struct {
		topic string
		p     int32
		err   error
	}{{topic, 0, kerr.ElectionNotNeeded}, {topic, partitions, kerr.UnknownTopicOrPartition}, {"no-such-topic", 0, kerr.UnknownTopicOrPartition}} {
		if r := res[want.topic][want.p]; !errors.Is(r.Err, want.err) {
			t.Errorf("preferred election of %s-%d: %v, want %v", want.topic, want.p, r.Err, want.err)
		}
	}
	res, err = elect.ElectLeaders(ctx, kadm.ElectLiveReplica, kadm.TopicsSet{topic: {1: {}}})
	if err != nil {
		t.Fatalf("unclean ElectLeaders: %v", err)
	}
	if r := res[topic][1]; !errors.Is(r.Err, kerr.ElectionNotNeeded) {
		t.Errorf("unclean election of a partition with a leader: %v, want %v", r.Err, kerr.ElectionNotNeeded)
	}

	// Writes go on, densely, under the new leaders.
	acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after-election", 600, partitions, -1)
	for _, a := range acks {
		if a.Offset < 600/partitions {
			t.Errorf("record %q written after the election was acknowledged at partition %d offset %d, below the %d before it", a.Value, a.Partition, a.Offset, 600/partitions)
			break
		}
	}
}

// TestClusterAutoLeaderRebalance kills a broker so that the partitions
// it prefers are led elsewhere and restarts it: as with Kafka's
// auto.leader.rebalance.enable, leadership moves back to it by itself at
// the next imbalance check, and writes go on.
func TestClusterAutoLeaderRebalance(t *testing.T) {
	c := startClusterWith(t, "--leader-imbalance-check-interval", "1s")
	ctx := testContext(t, 2*time.Minute)
	const topic, partitions = "rebalance", 6
	const victim = 2
	c.displacePreferred(ctx, topic, partitions, victim)
	before := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "while-down", 600, partitions, -1)
	c.broker(victim).Restart()
	c.waitReady(ctx)
	back := c.waitLeadersEverywhere(ctx, topic, partitions, ledByPreferred)
	led := 0
	for _, l := range back {
		if l.Leader == victim {
			led++
		}
	}
	if led == 0 {
		t.Fatalf("broker %d leads none of the partitions after the rebalance: %v", victim, back)
	}

	acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after-rebalance", 600, partitions, -1)
	for _, a := range acks {
		if a.Offset < 600/partitions {
			t.Errorf("record %q written after the rebalance was acknowledged at partition %d offset %d, below the %d before it", a.Value, a.Partition, a.Offset, 600/partitions)
			break
		}
	}
	log, _ := c.consumeAll(ctx, topic, partitions)
	reportLogProblems(t, "log after the rebalance", checkTopicLog(log, append(before, acks...), true))
}

// TestClusterMinInSyncReplicas kills a follower of a topic whose
// min.insync.replicas is its replication factor: as in Kafka, once the
// follower's broker is fenced and out of the ISR, acks=all writes are
// refused with NOT_ENOUGH_REPLICAS and leave nothing in the log, acks=1
// writes go on, and acks=all works again once the follower is back.
func TestClusterMinInSyncReplicas(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 2*time.Minute)
	const topic = "min-isr"
	adm := kadm.NewClient(c.client(nil))
	three := "3"
	createClusterTopicWith(ctx, t, adm, topic, 1, 3, map[string]*string{"min.insync.replicas": &three})
	leaders := c.waitLeadersEverywhere(ctx, topic, 1, nil)
	acks := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "all-in-sync", 100, 1, -1)

	victim := int32(-1)
	for _, id := range leaders[0].Replicas {
		if id != leaders[0].Leader {
			victim = id
			break
		}
	}
	killedAt := time.Now()
	c.broker(victim).Kill()
	c.waitFenced(ctx, victim, killedAt)
	c.waitReplicaStatus(ctx, topic, 1, "the killed follower out of the ISR", func(p kmsg.MetadataResponseTopicPartition) bool {
		return len(p.ISR) == 2
	})
	// Without idempotence and with one try, franz-go hands back the
	// broker's error instead of retrying it.
	once := func(ack kgo.Acks) *kgo.Client {
		return c.client(nil, kgo.RequiredAcks(ack), kgo.DisableIdempotentWrite(), kgo.RecordRetries(1),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RecordDeliveryTimeout(deliveryTimeout))
	}
	err := once(kgo.AllISRAcks()).ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("refused")}).FirstErr()
	if !errors.Is(err, kerr.NotEnoughReplicas) {
		t.Errorf("acks=all with 2 in-sync replicas of min.insync.replicas 3: %v, want %v", err, kerr.NotEnoughReplicas)
	}
	r, err := once(kgo.LeaderAck()).ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("acks-1")}).First()
	if err != nil {
		t.Fatalf("acks=1 with a follower down: %v", err)
	}
	acks = append(acks, ackedRecord{Partition: r.Partition, Offset: r.Offset, Value: string(r.Value)})

	c.broker(victim).Restart()
	c.waitReady(ctx)
	c.waitReplicaStatus(ctx, topic, 1, "the restarted follower back in the ISR", func(p kmsg.MetadataResponseTopicPartition) bool {
		return len(p.ISR) == 3
	})
	acks = append(acks, produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "back-in-sync", 100, 1, -1)...)
	log, _ := c.consumeAll(ctx, topic, 1)
	reportLogProblems(t, "log after min.insync.replicas refusals", checkTopicLog(log, acks, true, "refused"))
}
