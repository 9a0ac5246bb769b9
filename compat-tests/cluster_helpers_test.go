package compattests

// Helpers of the cluster fault-injection tests: a three-broker cluster of
// real pubg1 processes, requests pinned to one broker that fail softly
// (brokers die and freeze under them), a paced idempotent producer that
// records every acknowledgement, and readers of a topic's log as clients
// see it and as each replica stores it on disk.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/bench"
	"github.com/pubg1/pubg1/broker/raftlog"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/rs/zerolog"
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
	t       *testing.T
	base    string        // holds the brokers' data directories
	brokers []*brokerProc // ID i+1 at index i
	paused  map[int32]bool
	flags   []string // given to every broker after --id and --peers
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
	// TempDir before Cleanup: cleanups run last first, and the brokers
	// must be stopped before their directories are removed.
	c := &cluster{t: t, base: t.TempDir(), paused: make(map[int32]bool), flags: flags}
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
	addrs := make([]string, 0, clusterSize)
	for len(addrs) < clusterSize {
		if a := freeAddr(c.t); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	c.brokers = make([]*brokerProc, clusterSize)
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
			case len(m.Brokers) != clusterSize || m.ClusterID == nil || *m.ClusterID == "":
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
			if len(m.Brokers) != clusterSize-1 {
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
		out[p.Partition] = partLeader{Leader: leader, Epoch: p.LeaderEpoch, Replicas: p.Replicas}
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
			if l.Leader < 1 || int(l.Leader) > clusterSize || !c.live(l.Leader) || (accept != nil && !accept(p, l)) {
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
func createClusterTopic(ctx context.Context, t *testing.T, adm *kadm.Client, name string, partitions int32, rf int16) kadm.CreateTopicResponse {
	t.Helper()
	return createClusterTopicWith(ctx, t, adm, name, partitions, rf, nil)
}

// createClusterTopicWith is createClusterTopic with topic configs.
func createClusterTopicWith(ctx context.Context, t *testing.T, adm *kadm.Client, name string, partitions int32, rf int16, configs map[string]*string) kadm.CreateTopicResponse {
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

// ackedRecord is a record whose produce was acknowledged, and when.
type ackedRecord struct {
	Partition int32
	Offset    int64
	Value     string
	At        time.Time
}

// loadSpec bounds a produce stream in records and time.
type loadSpec struct {
	prefix     string // values are prefix-NNNNNNN, unique per stream
	partitions int32  // record i goes to partition i % partitions
	maxRecords int
	maxTime    time.Duration
	perTick    int // records handed to the client per tick
	tick       time.Duration
}

// loadProducer streams records through a franz-go client in the
// background until stopped or its bounds are reached.
type loadProducer struct {
	spec     loadSpec
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu       sync.Mutex
	acked    []ackedRecord
	perPart  map[int32]int
	failures int
	firstErr error
	sent     int
}

// startLoad starts producing; cl must use the manual partitioner.
func startLoad(cl *kgo.Client, topic string, spec loadSpec) *loadProducer {
	l := &loadProducer{spec: spec, stop: make(chan struct{}), done: make(chan struct{}), perPart: make(map[int32]int)}
	go l.run(cl, topic)
	return l
}

func (l *loadProducer) run(cl *kgo.Client, topic string) {
	defer close(l.done)
	deadline := time.Now().Add(l.spec.maxTime)
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(deliveryTimeout+30*time.Second))
	defer cancel()
	tick := time.NewTicker(l.spec.tick)
	defer tick.Stop()
	i := 0
produce:
	for i < l.spec.maxRecords && time.Now().Before(deadline) {
		select {
		case <-l.stop:
			break produce
		case <-tick.C:
		}
		for j := 0; j < l.spec.perTick && i < l.spec.maxRecords; j++ {
			r := &kgo.Record{Topic: topic, Partition: int32(i) % l.spec.partitions, Value: fmt.Appendf(nil, "%s-%07d", l.spec.prefix, i)}
			cl.Produce(ctx, r, l.promise)
			i++
		}
	}
	l.mu.Lock()
	l.sent = i
	l.mu.Unlock()
	if err := cl.Flush(ctx); err != nil {
		l.fail(fmt.Errorf("flushing: %w", err))
	}
}

func (l *loadProducer) promise(r *kgo.Record, err error) {
	if err != nil {
		l.fail(fmt.Errorf("record %q: %w", r.Value, err))
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = append(l.acked, ackedRecord{Partition: r.Partition, Offset: r.Offset, Value: string(r.Value), At: time.Now()})
	l.perPart[r.Partition]++
}

func (l *loadProducer) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures++
	if l.firstErr == nil {
		l.firstErr = err
	}
}

// counts returns the acknowledgements so far, in total and per partition.
func (l *loadProducer) counts() (int, map[int32]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), maps.Clone(l.perPart)
}

// waitAcks waits until cond holds for the acknowledgement counts; it
// fails the test if the stream ends or ctx expires first.
func (l *loadProducer) waitAcks(ctx context.Context, t *testing.T, what string, cond func(total int, perPart map[int32]int) bool) {
	t.Helper()
	ended := false
	ok := ktest.Until(ctx, pollEvery, func() bool {
		select {
		case <-l.done:
			ended = true
		default:
		}
		total, per := l.counts()
		return cond(total, per) || ended
	})
	total, per := l.counts()
	if !ok || !cond(total, per) {
		l.mu.Lock()
		failures, firstErr := l.failures, l.firstErr
		l.mu.Unlock()
		t.Fatalf("producer did not reach %q (stream ended: %v; %d acknowledged, per partition %v; %d failed, first: %v)",
			what, ended, total, per, failures, firstErr)
	}
}

// finish stops the stream, waits until every record is answered and
// returns the acknowledgements; failed records fail the test.
func (l *loadProducer) finish(t *testing.T) []ackedRecord {
	t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	select {
	case <-l.done:
	case <-time.After(deliveryTimeout + 45*time.Second):
		t.Fatalf("producer still flushing after %v", deliveryTimeout+45*time.Second)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures > 0 {
		t.Errorf("%d of %d produced records failed; first: %v", l.failures, l.sent, l.firstErr)
	}
	if len(l.acked)+l.failures != l.sent {
		t.Errorf("produced %d records but got %d acknowledgements and %d failures", l.sent, len(l.acked), l.failures)
	}
	return slices.Clone(l.acked)
}

// ackGap returns the longest time between consecutive acknowledgements on
// partition p and when that gap ended.
func ackGap(acks []ackedRecord, p int32) (time.Duration, time.Time) {
	var prev, end time.Time
	var gap time.Duration
	for _, a := range acks {
		if a.Partition != p {
			continue
		}
		if !prev.IsZero() && a.At.Sub(prev) > gap {
			gap, end = a.At.Sub(prev), a.At
		}
		prev = a.At
	}
	return gap, end
}

// firstAckAfter returns the first acknowledgement on p after t0.
func firstAckAfter(acks []ackedRecord, p int32, t0 time.Time) (time.Time, bool) {
	for _, a := range acks {
		if a.Partition == p && a.At.After(t0) {
			return a.At, true
		}
	}
	return time.Time{}, false
}

// produceAcked produces n records with values prefix-NNNNNNN round-robin
// over partitions (or all to one partition when only is >= 0) and returns
// their acknowledgements; any failure fails the test.
func produceAcked(ctx context.Context, t *testing.T, cl *kgo.Client, topic, prefix string, n int, partitions, only int32) []ackedRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		p := int32(i) % partitions
		if only >= 0 {
			p = only
		}
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%s-%07d", prefix, i)}
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("producing %d records to %s: %v", n, topic, err)
	}
	acks := make([]ackedRecord, 0, n)
	for _, r := range res {
		acks = append(acks, ackedRecord{Partition: r.Record.Partition, Offset: r.Record.Offset, Value: string(r.Record.Value), At: time.Now()})
	}
	return acks
}

// Reading a topic's log back.

// topicLog is a topic's log: offset to value, per partition.
type topicLog map[int32]map[int64]string

func (tl topicLog) put(p int32, off int64, v string) (string, bool) {
	if tl[p] == nil {
		tl[p] = make(map[int64]string)
	}
	old, dup := tl[p][off]
	tl[p][off] = v
	return old, dup
}

// endOffsets lists the high watermarks of topic, asking until every
// partition answers without error.
func (c *cluster) endOffsets(ctx context.Context, topic string, partitions int32) map[int32]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	adm := kadm.NewClient(c.client(nil))
	var ends map[int32]int64
	var last error
	ok := ktest.Until(ctx, pollEvery, func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		defer lcancel()
		listed, err := adm.ListEndOffsets(lctx, topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			last = err
			return false
		}
		ends = make(map[int32]int64)
		listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
		if len(ends) != int(partitions) {
			last = fmt.Errorf("%d of %d partitions listed", len(ends), partitions)
			return false
		}
		return true
	})
	if !ok {
		c.t.Fatalf("listing end offsets of %s: %v", topic, last)
	}
	return ends
}

// consumeAll reads every partition of topic from offset 0 to its high
// watermark with franz-go and returns the log and the high watermarks.
func (c *cluster) consumeAll(ctx context.Context, topic string, partitions int32) (topicLog, map[int32]int64) {
	c.t.Helper()
	ends := c.endOffsets(ctx, topic, partitions)
	assign := make(map[int32]kgo.Offset)
	for p, end := range ends {
		if end > 0 {
			assign[p] = kgo.NewOffset().At(0)
		}
	}
	log := topicLog{}
	if len(assign) == 0 {
		return log, ends
	}
	cl := c.client(nil, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}), kgo.FetchMaxWait(500*time.Millisecond))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var lastErr error
	complete := func() bool {
		for p, end := range ends {
			if int64(len(log[p])) < end {
				return false
			}
		}
		return true
	}
	for !complete() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			got := make(map[int32]int)
			for p, m := range log {
				got[p] = len(m)
			}
			c.t.Fatalf("consuming %s: read %v records of end offsets %v before %v (last fetch error: %v)", topic, got, ends, ctx.Err(), lastErr)
		}
		fs.EachError(func(_ string, _ int32, err error) { lastErr = err })
		fs.EachRecord(func(r *kgo.Record) {
			if old, dup := log.put(r.Partition, r.Offset, string(r.Value)); dup && old != string(r.Value) {
				c.t.Errorf("partition %d offset %d read as %q and as %q", r.Partition, r.Offset, old, r.Value)
			}
		})
	}
	return log, ends
}

// checkLog compares a topic's log with the acknowledgements: per partition
// the offsets are dense from 0, every acknowledged record is at the offset
// it was acknowledged with, and no value appears twice; with exact, the
// log holds nothing that was not acknowledged; none of absent appears. It
// returns the problems found.
func checkTopicLog(log topicLog, acks []ackedRecord, exact bool, absent ...string) []string {
	var problems []string
	where := make(map[string]string)
	for p, m := range log {
		offs := make([]int64, 0, len(m))
		for o := range m {
			offs = append(offs, o)
		}
		slices.Sort(offs)
		for i, o := range offs {
			if o != int64(i) {
				problems = append(problems, fmt.Sprintf("partition %d: offsets not dense from 0: position %d holds offset %d", p, i, o))
				break
			}
		}
		for _, o := range offs {
			v := m[o]
			at := fmt.Sprintf("partition %d offset %d", p, o)
			if prev, dup := where[v]; dup {
				problems = append(problems, fmt.Sprintf("value %q at both %s and %s", v, prev, at))
			}
			where[v] = at
		}
	}
	ackedValues := make(map[string]bool, len(acks))
	for _, a := range acks {
		if ackedValues[a.Value] {
			problems = append(problems, fmt.Sprintf("value %q acknowledged twice", a.Value))
		}
		ackedValues[a.Value] = true
		got, ok := log[a.Partition][a.Offset]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("record %q acknowledged at partition %d offset %d is missing (log holds %d records there)", a.Value, a.Partition, a.Offset, len(log[a.Partition])))
		case got != a.Value:
			problems = append(problems, fmt.Sprintf("record %q acknowledged at partition %d offset %d, but that offset holds %q", a.Value, a.Partition, a.Offset, got))
		}
	}
	if exact {
		for v, at := range where {
			if !ackedValues[v] {
				problems = append(problems, fmt.Sprintf("%s holds %q, which was never acknowledged", at, v))
			}
		}
	}
	for _, v := range absent {
		if at, ok := where[v]; ok {
			problems = append(problems, fmt.Sprintf("%s holds %q, which must not be in the log", at, v))
		}
	}
	sort.Strings(problems)
	return problems
}

// reportProblems fails the test with the first few problems.
func reportLogProblems(t *testing.T, what string, problems []string) {
	t.Helper()
	for i, p := range problems {
		if i == 10 {
			t.Errorf("%s: %d more problems", what, len(problems)-i)
			break
		}
		t.Errorf("%s: %s", what, p)
	}
}

// replicaStats describes what a replica's Raft log held.
type replicaStats struct {
	entries  int // Raft log entries
	batches  int // record batches in command entries
	rejected int // command entries the partition FSM would not apply
	// logStart is per partition the highest log start a stored entry
	// sets (none when retention never ran).
	logStart map[int32]int64
}

// setLogStartEntry marks (in its Raft log extensions) a partition entry
// that sets the log start to the big-endian offset it holds.
const setLogStartEntry = 1

// readReplica reads one broker's copy of a topic straight from its data
// directory (the broker must be stopped): the Raft log of every partition
// group, with its command entries applied as the partition FSM applies
// them (an entry must continue the offsets; others are skipped). A log
// that still holds its first entry starts at offset 0; one whose entries
// below the log start were deleted starts where its first command entry
// does.
func readReplica(dir string, topicID [16]byte, partitions int32) (topicLog, replicaStats, error) {
	st := replicaStats{logStart: make(map[int32]int64)}
	store, err := storage.OpenBadger(storage.BadgerOptions{Dir: dir, Logger: zerolog.Nop(), GCInterval: -1})
	if err != nil {
		return nil, st, err
	}
	defer store.Close()
	log := topicLog{}
	dec := kgo.DefaultDecompressor()
	for p := range partitions {
		group := fmt.Sprintf("p/%x/%d", topicID, p)
		rl, err := raftlog.Open(store, group)
		if err != nil {
			return nil, st, err
		}
		first, _ := rl.FirstIndex()
		last, _ := rl.LastIndex()
		if first == 0 {
			return nil, st, fmt.Errorf("group %s has no log", group)
		}
		// Index 1 is the bootstrap configuration, so a log holding it has
		// lost nothing to retention.
		next, anchored := int64(0), first == 1
		for i := first; i <= last; i++ {
			var l raft.Log
			if err := rl.GetLog(i, &l); err != nil {
				return nil, st, fmt.Errorf("group %s entry %d of [%d, %d]: %w", group, i, first, last, err)
			}
			st.entries++
			if l.Type != raft.LogCommand {
				continue
			}
			if len(l.Extensions) > 0 {
				if l.Extensions[0] == setLogStartEntry && len(l.Data) == 8 {
					st.logStart[p] = max(st.logStart[p], int64(binary.BigEndian.Uint64(l.Data)))
				}
				continue
			}
			if !anchored && len(l.Data) >= 8 {
				next, anchored = int64(binary.BigEndian.Uint64(l.Data)), true
			}
			recs, end, n, err := entryRecords(l.Data, next, dec)
			if err != nil {
				st.rejected++
				continue
			}
			st.batches += n
			for _, r := range recs {
				if _, dup := log.put(p, r.off, r.value); dup {
					return nil, st, fmt.Errorf("group %s entry %d repeats offset %d", group, i, r.off)
				}
			}
			next = end
		}
	}
	return log, st, nil
}

type storedRecord struct {
	off   int64
	value string
}

// entryRecords decodes the record batches packed into one Raft entry,
// which must start at offset next, and returns the records, the offset
// after them and the number of batches.
func entryRecords(data []byte, next int64, dec kgo.Decompressor) ([]storedRecord, int64, int, error) {
	var out []storedRecord
	n := 0
	for len(data) > 0 {
		if len(data) < 12 {
			return nil, 0, 0, fmt.Errorf("%d trailing bytes", len(data))
		}
		size := 12 + int(int32(binary.BigEndian.Uint32(data[8:])))
		if size < 61 || size > len(data) {
			return nil, 0, 0, fmt.Errorf("batch of %d bytes in %d", size, len(data))
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data[:size]); err != nil {
			return nil, 0, 0, fmt.Errorf("decoding batch: %w", err)
		}
		data = data[size:]
		if b.FirstOffset != next {
			return nil, 0, 0, fmt.Errorf("batch at offset %d where %d follows", b.FirstOffset, next)
		}
		raw, err := dec.Decompress(b.Records, kgo.CompressionCodecType(b.Attributes&0x07))
		if err != nil {
			return nil, 0, 0, fmt.Errorf("decompressing batch at %d: %w", b.FirstOffset, err)
		}
		for range b.NumRecords {
			l, k := binary.Varint(raw)
			if k <= 0 || l < 0 || int(l) > len(raw)-k {
				return nil, 0, 0, fmt.Errorf("bad record length in batch at %d", b.FirstOffset)
			}
			var r kmsg.Record
			if err := r.ReadFrom(raw[:k+int(l)]); err != nil {
				return nil, 0, 0, fmt.Errorf("decoding record in batch at %d: %w", b.FirstOffset, err)
			}
			raw = raw[k+int(l):]
			out = append(out, storedRecord{off: b.FirstOffset + int64(r.OffsetDelta), value: string(r.Value)})
		}
		next = b.FirstOffset + int64(b.LastOffsetDelta) + 1
		n++
	}
	return out, next, n, nil
}

// checkReplicas stops the cluster and checks every broker's stored copy of
// the topic: it must equal want (the log as consumed) and pass checkLog. A
// replica may lag at the moment of the stop, so while one differs the
// cluster is started again, left to elect leaders for the topic, and
// stopped again, at most replicaRounds times. The cluster is left stopped.
func (c *cluster) checkReplicas(ctx context.Context, topic string, topicID [16]byte, partitions int32, want topicLog, acks []ackedRecord, exact bool, absent ...string) {
	c.t.Helper()
	var problems []string
	for round := 1; ; round++ {
		before := c.newestLeaders(topic)
		c.stopAll()
		problems = problems[:0]
		for i, b := range c.brokers {
			id := i + 1
			log, st, err := readReplica(b.dataDir, topicID, partitions)
			if err != nil {
				problems = append(problems, fmt.Sprintf("broker %d: reading its replica: %v", id, err))
				continue
			}
			if st.rejected > 0 {
				c.t.Logf("broker %d: %d command entries of %s would be rejected by the partition FSM", id, st.rejected, topic)
			}
			for _, p := range checkTopicLog(log, acks, exact, absent...) {
				problems = append(problems, fmt.Sprintf("broker %d replica: %s", id, p))
			}
			for _, p := range diffLogs(want, log) {
				problems = append(problems, fmt.Sprintf("broker %d replica: %s", id, p))
			}
			if round == 1 || len(problems) == 0 {
				c.t.Logf("broker %d replica of %s: %d Raft entries, %d batches, %d records", id, topic, st.entries, st.batches, countRecords(log))
			}
		}
		if len(problems) == 0 {
			c.t.Logf("all %d replicas of %s hold the consumed log (check round %d)", clusterSize, topic, round)
			return
		}
		if round == replicaRounds {
			break
		}
		c.t.Logf("replica check round %d: %d differences (first: %s); restarting the cluster to let replicas catch up", round, len(problems), problems[0])
		c.restartAll(ctx)
		c.waitLeaders(ctx, topic, partitions, newerThan(before))
	}
	reportLogProblems(c.t, fmt.Sprintf("replicas of %s after %d rounds", topic, replicaRounds), problems)
}

// diffLogs lists where got differs from want.
func diffLogs(want, got topicLog) []string {
	var out []string
	for p, wm := range want {
		gm := got[p]
		if len(gm) != len(wm) {
			out = append(out, fmt.Sprintf("partition %d holds %d records, the consumed log %d", p, len(gm), len(wm)))
		}
		for o, v := range wm {
			if g, ok := gm[o]; !ok || g != v {
				out = append(out, fmt.Sprintf("partition %d offset %d holds %q (present %v), consumed %q", p, o, g, ok, v))
				break
			}
		}
	}
	for p, gm := range got {
		if _, ok := want[p]; !ok && len(gm) > 0 {
			out = append(out, fmt.Sprintf("partition %d holds %d records, the consumed log none", p, len(gm)))
		}
	}
	return out
}

func countRecords(log topicLog) int {
	n := 0
	for _, m := range log {
		n += len(m)
	}
	return n
}
