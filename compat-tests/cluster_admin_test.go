package compattests

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topic operations, configs, leader epochs and leader elections through a
// three-broker cluster of real processes.

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

	// Produce to the leader of partition 0, then Produce, Fetch and
	// ListOffsets to a follower.
	lead := leaders[0].Leader
	ref := topicRef{name: "ops-a", id: ids["ops-a"]}
	produceCode := func(id int32, value string) (int16, int64) {
		batch := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte(value)}}.build()
		pr := pinned(id, produceRequest(0, ref, 0, batch)).(*kmsg.ProduceResponse)
		if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
			t.Fatalf("Produce of one partition answered %d topics", len(pr.Topics))
		}
		return pr.Topics[0].Partitions[0].ErrorCode, pr.Topics[0].Partitions[0].BaseOffset
	}
	// Leadership may move once more after a full restart (replicas that
	// start later stand too); a refusal is wrong only while no newer
	// leader is reported.
	for epoch, moves := leaders[0].Epoch, 0; ; moves++ {
		code, off := produceCode(lead, "to-the-leader")
		now := c.newestLeaders("ops-a")[0]
		if code == kerr.NotLeaderForPartition.Code && now.Epoch > epoch && moves < 3 {
			t.Logf("partition 0 moved from leader %d epoch %d to %d epoch %d", lead, epoch, now.Leader, now.Epoch)
			lead, epoch = now.Leader, now.Epoch
			continue
		}
		if code != 0 || off != 0 {
			t.Errorf("Produce to leader %d answered %s at offset %d, want success at 0", lead, outcome(nil, code), off)
		}
		break
	}
	follower := leaders[0].Replicas[0]
	if follower == lead {
		follower = leaders[0].Replicas[1]
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

	fr := pinned(follower, fetchRequest(0, ref, 0, 0, 0, 0)).(*kmsg.FetchResponse)
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].ErrorCode != kerr.NotLeaderForPartition.Code {
		t.Errorf("Fetch from follower %d: want NOT_LEADER_OR_FOLLOWER, got %+v", follower, fr.Topics)
	}
	if code, _, err := listOffsetsOf(c.broker(follower).Addr(), "ops-a", 0); err != nil || code != kerr.NotLeaderForPartition.Code {
		t.Errorf("ListOffsets to follower %d: %s, want NOT_LEADER_OR_FOLLOWER", follower, outcome(err, code))
	}

	// OffsetForLeaderEpoch: the end of the old leader's epoch, asked of the
	// new leader after a change.
	produceAcked(ctx, t, c.client(nil, producerOpts()...), "ops-a", "epoch-one", 100, 3, 0)
	cur := c.newestLeaders("ops-a")[0]
	lead, epoch1 := cur.Leader, cur.Epoch
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
