package compattests

// Helpers of the cluster fault-injection tests: a three-broker cluster of
// real pubg1 processes, requests pinned to one broker that fail softly
// (brokers die and freeze under them), a paced idempotent producer that
// records every acknowledgement, and readers of a topic's log as clients
// see it and as each replica stores it on disk.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pubg1/pubg1/bench"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	clusterSize = 3
	// clusterWait bounds each wait for the cluster to reach a state; an
	// election takes a few seconds (1 s timeouts), so this is generous.
	clusterWait = 30 * time.Second
	// probeTimeout bounds one request pinned to one broker.
	probeTimeout = 2 * time.Second
	pollEvery    = 20 * time.Millisecond
	// deliveryTimeout is how long the producers keep retrying a record.
	deliveryTimeout = 60 * time.Second
	// replicaRounds bounds how often the cluster is restarted to let a
	// lagging replica catch up before its stored log is judged.
	replicaRounds = 3
	// logTail bounds the broker output logged when a test fails.
	logTail = 48 << 10
)

// cluster is a three-broker pubg1 cluster; broker IDs are 1..3.
type cluster struct {
	t       testing.TB
	base    string        // holds the brokers' data directories
	brokers []*brokerProc // ID i+1 at index i
	paused  map[int32]bool
	flags   []string // given to every broker after --id and --peers
	size    int      // brokers: clusterSize unless startClusterOf says otherwise
}

// startCluster starts three brokers on free loopback ports, each knowing
// the others through --peers, and waits until the metadata group has a
// cluster ID. The brokers are stopped when the test ends.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t)
}

// startClusterWith is startCluster with extra flags for every broker.
func startClusterWith(t *testing.T, flags ...string) *cluster {
	t.Helper()
	return startClusterOf(t, clusterSize, flags...)
}

// startClusterOf is startClusterWith with n brokers.
func startClusterOf(t testing.TB, n int, flags ...string) *cluster {
	t.Helper()
	// TempDir before Cleanup: cleanups run last first, and the brokers
	// must be stopped before their directories are removed.
	c := &cluster{t: t, base: t.TempDir(), paused: make(map[int32]bool), flags: flags, size: n}
	t.Cleanup(c.cleanup)
	var err error
	for range launchAttempts {
		if err = c.launch(); !errors.Is(err, bench.ErrPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting cluster: %v", err)
	}
	c.waitReady(testContext(t, clusterWait))
	return c
}

// launch picks ports and starts every broker; a port taken in between
// makes the caller pick all of them again, since --peers names them all.
func (c *cluster) launch() error {
	for _, b := range c.brokers {
		if b.Alive() {
			b.Kill()
		}
	}
	addrs := make([]string, 0, c.size)
	for len(addrs) < c.size {
		if a := freeAddr(c.t); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	c.brokers = make([]*brokerProc, c.size)
	for i, a := range addrs {
		dir, err := os.MkdirTemp(c.base, fmt.Sprintf("broker-%d-", i+1))
		if err != nil {
			return err
		}
		flags := append([]string{"--id", strconv.Itoa(i + 1), "--peers", bench.Peers(addrs)}, c.flags...)
		c.brokers[i] = newBrokerProc(c.t, a, dir, flags...)
	}
	for _, b := range c.brokers {
		if err := b.launch(); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) cleanup() {
	for _, b := range c.brokers {
		if b.Alive() {
			b.Stop()
		}
	}
	if c.t.Failed() {
		for i, b := range c.brokers {
			out := b.Output()
			if len(out) > logTail {
				out = "[...]" + out[len(out)-logTail:]
			}
			c.t.Logf("broker %d (%s) output:\n%s", i+1, b.Addr(), out)
		}
	}
}

func (c *cluster) broker(id int32) *brokerProc { return c.brokers[id-1] }

// live reports whether a broker runs and is not frozen.
func (c *cluster) live(id int32) bool { return c.broker(id).Alive() && !c.paused[id] }

// liveIDs lists the brokers that run and are not frozen.
func (c *cluster) liveIDs() []int32 {
	var ids []int32
	for i := range c.brokers {
		if id := int32(i + 1); c.live(id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func (c *cluster) addrs(ids []int32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = c.broker(id).Addr()
	}
	return out
}

// pause freezes a broker with SIGSTOP; resume thaws it with SIGCONT.
func (c *cluster) pause(id int32) {
	c.broker(id).Pause()
	c.paused[id] = true
}

func (c *cluster) resume(id int32) {
	c.broker(id).Resume()
	delete(c.paused, id)
}

// stopAll stops every running broker cleanly.
func (c *cluster) stopAll() {
	c.t.Helper()
	for id, b := range c.brokers {
		if b.Alive() {
			b.Stop()
		}
		delete(c.paused, int32(id+1))
	}
}

// killAll SIGKILLs every running broker.
func (c *cluster) killAll() {
	c.t.Helper()
	for id, b := range c.brokers {
		if b.Alive() {
			b.Kill()
		}
		delete(c.paused, int32(id+1))
	}
}

// restartAll starts every stopped broker again and waits for the cluster.
func (c *cluster) restartAll(ctx context.Context) {
	c.t.Helper()
	for _, b := range c.brokers {
		if !b.Alive() {
			b.Restart()
		}
	}
	c.waitReady(ctx)
}

// client returns a franz-go client seeded with the given brokers (every
// live one when none are given), closed when the test ends.
func (c *cluster) client(seeds []int32, opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	if len(seeds) == 0 {
		seeds = c.liveIDs()
	}
	opts = append([]kgo.Opt{kgo.SeedBrokers(c.addrs(seeds)...)}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		c.t.Fatalf("creating franz-go client: %v", err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// waitReady waits until every live broker answers Metadata with all the
// brokers and the same non-empty cluster ID.
func (c *cluster) waitReady(ctx context.Context) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var last string
	ok := ktest.Until(ctx, pollEvery, func() bool {
		ids := map[string]bool{}
		for _, id := range c.liveIDs() {
			m, err := metadataOf(c.broker(id).Addr())
			switch {
			case err != nil:
				last = fmt.Sprintf("broker %d: %v", id, err)
				return false
			case len(m.Brokers) != c.size || m.ClusterID == nil || *m.ClusterID == "":
				last = fmt.Sprintf("broker %d lists %d brokers, cluster ID %v", id, len(m.Brokers), m.ClusterID)
				return false
			}
			ids[*m.ClusterID] = true
		}
		if len(ids) != 1 {
			last = fmt.Sprintf("brokers disagree on the cluster ID: %v", ids)
			return false
		}
		return true
	})
	if !ok {
		c.t.Fatalf("cluster not ready within %v: %s", clusterWait, last)
	}
}

// waitFenced waits until every live broker leaves the dead broker victim
// out of Metadata, as Kafka leaves out fenced brokers, so that clients stop
// dialling it.
func (c *cluster) waitFenced(ctx context.Context, victim int32, killedAt time.Time) {
	c.t.Helper()
	var listed []int32
	if !ktest.Until(ctx, pollEvery, func() bool {
		listed = listed[:0]
		for _, id := range c.liveIDs() {
			m, err := metadataOf(c.broker(id).Addr())
			if err != nil {
				return false
			}
			for _, b := range m.Brokers {
				listed = append(listed, b.NodeID)
			}
			if len(m.Brokers) != c.size-1 {
				return false
			}
		}
		return !slices.Contains(listed, victim)
	}) {
		c.t.Fatalf("Metadata still lists brokers %v with broker %d dead", listed, victim)
	}
	c.t.Logf("broker %d left Metadata %v after its kill", victim, time.Since(killedAt).Round(10*time.Millisecond))
}

// partLeader is a partition's leader as Metadata reports it.
type partLeader struct {
	Leader   int32
	Epoch    int32
	Replicas []int32
	ISR      []int32
	Offline  []int32
}

// followers are the partition's replicas other than its leader, in
// replica order.
func (l partLeader) followers() []int32 {
	var out []int32
	for _, r := range l.Replicas {
		if r != l.Leader {
			out = append(out, r)
		}
	}
	return out
}

// leadersFrom asks one broker for the leaders of topic's partitions.
func (c *cluster) leadersFrom(id int32, topic string) (map[int32]partLeader, error) {
	m, err := metadataOf(c.broker(id).Addr(), topic)
	if err != nil {
		return nil, err
	}
	if len(m.Topics) != 1 {
		return nil, fmt.Errorf("metadata of %s lists %d topics", topic, len(m.Topics))
	}
	mt := m.Topics[0]
	if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	out := make(map[int32]partLeader, len(mt.Partitions))
	for _, p := range mt.Partitions {
		leader := p.Leader
		if p.ErrorCode != 0 {
			leader = -1
		}
		out[p.Partition] = partLeader{Leader: leader, Epoch: p.LeaderEpoch, Replicas: p.Replicas, ISR: p.ISR, Offline: p.OfflineReplicas}
	}
	return out, nil
}

// waitLeaders polls Metadata of the live brokers, in turn, until one of
// them reports for every partition of topic a live leader that accept
// (when given) approves, and returns those leaders.
func (c *cluster) waitLeaders(ctx context.Context, topic string, partitions int32, accept func(p int32, l partLeader) bool) map[int32]partLeader {
	c.t.Helper()
	return c.awaitLeaders(ctx, topic, partitions, accept, false)
}

// waitLeadersEverywhere is waitLeaders until every live broker reports
// acceptable leaders: brokers apply the metadata at their own pace, and
// clients ask any of them.
func (c *cluster) waitLeadersEverywhere(ctx context.Context, topic string, partitions int32, accept func(p int32, l partLeader) bool) map[int32]partLeader {
	c.t.Helper()
	return c.awaitLeaders(ctx, topic, partitions, accept, true)
}

func (c *cluster) awaitLeaders(ctx context.Context, topic string, partitions int32, accept func(p int32, l partLeader) bool, everywhere bool) map[int32]partLeader {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var got map[int32]partLeader
	var last string
	acceptable := func(id int32) bool {
		ls, err := c.leadersFrom(id, topic)
		if err != nil {
			last = fmt.Sprintf("broker %d: %v", id, err)
			return false
		}
		if len(ls) != int(partitions) {
			last = fmt.Sprintf("broker %d lists %d partitions of %s", id, len(ls), topic)
			return false
		}
		for p, l := range ls {
			if l.Leader < 1 || int(l.Leader) > c.size || !c.live(l.Leader) || (accept != nil && !accept(p, l)) {
				last = fmt.Sprintf("broker %d reports partition %d led by %d at epoch %d", id, p, l.Leader, l.Epoch)
				return false
			}
		}
		got = ls
		return true
	}
	turn := 0
	ok := ktest.Until(ctx, pollEvery, func() bool {
		ids := c.liveIDs()
		if len(ids) == 0 {
			last = "no live broker"
			return false
		}
		if !everywhere {
			turn++
			return acceptable(ids[turn%len(ids)])
		}
		for _, id := range ids {
			if !acceptable(id) {
				return false
			}
		}
		return true
	})
	if !ok {
		c.t.Fatalf("partitions of %s have no acceptable leaders within %v: %s", topic, clusterWait, last)
	}
	return got
}

// newestLeaders returns for each partition of topic the leader with the
// highest epoch any live broker reports.
func (c *cluster) newestLeaders(topic string) map[int32]partLeader {
	out := make(map[int32]partLeader)
	for _, id := range c.liveIDs() {
		ls, err := c.leadersFrom(id, topic)
		if err != nil {
			continue
		}
		for p, l := range ls {
			if cur, ok := out[p]; !ok || l.Epoch > cur.Epoch {
				out[p] = l
			}
		}
	}
	return out
}

// newerThan accepts leaders elected after the given ones: a higher epoch
// (Metadata keeps a partition's last reported leader until a new one
// reports, even across restarts).
func newerThan(before map[int32]partLeader) func(int32, partLeader) bool {
	return func(p int32, l partLeader) bool { return l.Epoch > before[p].Epoch }
}

// ledByPreferred accepts a partition led by its preferred replica, the
// first of its replica set.
func ledByPreferred(_ int32, l partLeader) bool { return l.Leader == l.Replicas[0] }

// displacePreferred creates topic with three replicas, waits until every
// partition is led by its preferred replica (as in Kafka: the replicas of a
// new partition stand for election in replica-set order, the first at
// once), then kills broker victim and waits until it leads none of them.
func (c *cluster) displacePreferred(ctx context.Context, topic string, partitions, victim int32) {
	c.t.Helper()
	createClusterTopic(ctx, c.t, kadm.NewClient(c.client(nil)), topic, partitions, 3)
	c.waitLeadersEverywhere(ctx, topic, partitions, ledByPreferred)
	c.broker(victim).Kill()
	c.waitLeadersEverywhere(ctx, topic, partitions, func(_ int32, l partLeader) bool { return l.Leader != victim })
}

// createClusterTopic creates a topic through adm and checks the answer.
func createClusterTopic(ctx context.Context, t testing.TB, adm *kadm.Client, name string, partitions int32, rf int16) kadm.CreateTopicResponse {
	t.Helper()
	return createClusterTopicWith(ctx, t, adm, name, partitions, rf, nil)
}

// createClusterTopicWith is createClusterTopic with topic configs.
func createClusterTopicWith(ctx context.Context, t testing.TB, adm *kadm.Client, name string, partitions int32, rf int16, configs map[string]*string) kadm.CreateTopicResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, rf, configs, name)
	if err != nil {
		t.Fatalf("creating topic %s: %v (%s)", name, err, resp.ErrMessage)
	}
	if resp.NumPartitions != partitions || resp.ReplicationFactor != rf || resp.ID == (kadm.TopicID{}) {
		t.Fatalf("CreateTopics answered %d partitions, replication factor %d, ID %v; want %d, %d and an ID",
			resp.NumPartitions, resp.ReplicationFactor, resp.ID, partitions, rf)
	}
	return resp
}

// checkReplicaSets checks that every partition has rf distinct replicas.
func checkReplicaSets(t *testing.T, topic string, leaders map[int32]partLeader, rf int) {
	t.Helper()
	for p, l := range leaders {
		distinct := map[int32]bool{}
		for _, r := range l.Replicas {
			if r >= 1 && r <= clusterSize {
				distinct[r] = true
			}
		}
		if len(l.Replicas) != rf || len(distinct) != rf {
			t.Errorf("%s partition %d has replicas %v, want %d distinct brokers", topic, p, l.Replicas, rf)
		}
		if !slices.Contains(l.Replicas, l.Leader) {
			t.Errorf("%s partition %d is led by %d, which is not one of its replicas %v", topic, p, l.Leader, l.Replicas)
		}
	}
}

// Requests pinned to one broker, each on a fresh connection, that return
// errors instead of failing the test: they are sent to brokers that may be
// dead or frozen.

// dialPinned connects to addr for requests whose answer may come late or
// never; only ktest.Conn's error-returning methods suit it.
func dialPinned(addr string) (*ktest.Conn, error) {
	c, err := ktest.Connect(addr, probeTimeout)
	if err != nil {
		return nil, err
	}
	c.ClientID, c.Timeout = compatClientID, probeTimeout
	return c, nil
}

// requestTo sends req to addr and waits probeTimeout for the answer.
func requestTo(addr string, req kmsg.Request) (kmsg.Response, error) {
	return requestWithin(addr, req, probeTimeout)
}

// requestWithin sends req to addr and waits up to timeout for the answer.
func requestWithin(addr string, req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	c, err := dialPinned(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.RoundTrip(req, timeout)
}

// metadataOf asks one broker for the metadata of the given topics (of
// every topic when none are given), never creating topics.
func metadataOf(addr string, topics ...string) (*kmsg.MetadataResponse, error) {
	return metadataWithin(addr, probeTimeout, topics...)
}

// metadataWithin is metadataOf waiting up to timeout for the answer.
func metadataWithin(addr string, timeout time.Duration, topics ...string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	req.AllowAutoTopicCreation = false
	for _, name := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := requestWithin(addr, req, timeout)
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.MetadataResponse), nil
}

// listOffsetsOf asks one broker for the end offset of one partition and
// returns the partition's error code and offset.
func listOffsetsOf(addr, topic string, partition int32) (int16, int64, error) {
	return listOffsetsAt(addr, topic, partition, -1)
}

// listOffsetsAt asks one broker for an offset of one partition by
// timestamp (-1 latest, -2 earliest).
func listOffsetsAt(addr, topic string, partition int32, timestamp int64) (int16, int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.SetVersion(7)
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.CurrentLeaderEpoch, rp.Timestamp = partition, -1, timestamp
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := requestTo(addr, req)
	if err != nil {
		return 0, 0, err
	}
	lr := resp.(*kmsg.ListOffsetsResponse)
	if len(lr.Topics) != 1 || len(lr.Topics[0].Partitions) != 1 {
		return 0, 0, fmt.Errorf("ListOffsets of one partition answered %d topics", len(lr.Topics))
	}
	p := lr.Topics[0].Partitions[0]
	return p.ErrorCode, p.Offset, nil
}

// A paced producer that records every acknowledgement.

// Reading a topic's log back.
