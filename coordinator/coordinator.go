// Package coordinator is the group coordinator: the classic Kafka consumer
// group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as one state
// machine per group, and committed offsets. Group metadata and offsets are
// stored as records in Kafka's own formats in the internal topic
// __consumer_offsets; the coordinator of a group is the leader of its
// partition of that topic, and a new leader rebuilds the groups by replaying
// the partition (Elect).
//
// Each group is owned by one goroutine, fed with operations through a
// channel; nothing else touches a group's state.
package coordinator

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// OffsetsTopic is the internal topic holding group metadata and offsets.
const OffsetsTopic = "__consumer_offsets"

// newMemberJoinTimeout bounds how long a new member may wait in a join that
// does not complete (Kafka's NewMemberJoinTimeoutMs).
const newMemberJoinTimeout = 5 * time.Minute

// Config is the coordinator's configuration: Kafka's group.* and offsets.*
// broker settings.
type Config struct {
	// Partitions is the number of partitions of __consumer_offsets
	// (offsets.topic.num.partitions); it decides which partition, and so
	// which coordinator, a group belongs to.
	Partitions int32
	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a
	// member may ask for (group.min/max.session.timeout.ms).
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration
	// InitialRebalanceDelay is how long the first rebalance of an empty
	// group waits for more members (group.initial.rebalance.delay.ms).
	InitialRebalanceDelay time.Duration
	// OffsetsRetention is how long the offsets of an empty group are kept
	// (offsets.retention.minutes), counted from when the group became
	// empty, or from the commit for groups that never had members.
	OffsetsRetention time.Duration
	// RetentionCheckInterval is how often expired offsets are removed
	// (offsets.retention.check.interval.ms).
	RetentionCheckInterval time.Duration
	// MaxMetadataBytes is the largest commit metadata string accepted
	// (offset.metadata.max.bytes).
	MaxMetadataBytes int
	// Decompressor reads compressed batches while loading; nil uses
	// franz-go's default.
	Decompressor kgo.Decompressor
}

// DefaultConfig returns Kafka's defaults.
func DefaultConfig() Config {
	return Config{
		Partitions:             50,
		MinSessionTimeout:      6 * time.Second,
		MaxSessionTimeout:      30 * time.Minute,
		InitialRebalanceDelay:  3 * time.Second,
		OffsetsRetention:       7 * 24 * time.Hour,
		RetentionCheckInterval: 10 * time.Minute,
		MaxMetadataBytes:       4096,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Partitions < 1:
		return fmt.Errorf("%w: offsets topic partitions %d must be at least 1", ErrInvalidConfig, c.Partitions)
	case c.MinSessionTimeout < 0 || c.MaxSessionTimeout < c.MinSessionTimeout:
		return fmt.Errorf("%w: session timeout bounds [%v, %v]", ErrInvalidConfig, c.MinSessionTimeout, c.MaxSessionTimeout)
	case c.InitialRebalanceDelay < 0:
		return fmt.Errorf("%w: initial rebalance delay %v is negative", ErrInvalidConfig, c.InitialRebalanceDelay)
	case c.OffsetsRetention <= 0:
		return fmt.Errorf("%w: offsets retention %v must be positive", ErrInvalidConfig, c.OffsetsRetention)
	case c.RetentionCheckInterval <= 0:
		return fmt.Errorf("%w: offsets retention check interval %v must be positive", ErrInvalidConfig, c.RetentionCheckInterval)
	case c.MaxMetadataBytes < 0:
		return fmt.Errorf("%w: offset metadata max bytes %d is negative", ErrInvalidConfig, c.MaxMetadataBytes)
	}
	return nil
}

// Coordinator serves the groups of the offsets partitions this broker leads.
type Coordinator struct {
	cfg    Config
	log    zerolog.Logger
	shards []*shard

	mu      sync.Mutex // guards closing and wg.Add
	closing bool
	wg      sync.WaitGroup
	stop    chan struct{} // closed when closing begins
	once    sync.Once
}

// shardState is what this broker is for one offsets partition.
type shardState int

const (
	shardUnowned shardState = iota // another broker leads it, or nobody
	shardLoading                   // elected, replaying the partition
	shardLeading                   // serving its groups
	shardFailed                    // loading failed
)

// shard is one offsets partition and the groups it holds.
type shard struct {
	id int32

	mu       sync.Mutex
	state    shardState
	epoch    uint64 // bumped by every Elect and Resign; a stale load is dropped
	p        partition.Partition
	groups   map[string]*group
	retiring []*group // stopped groups that may still be finishing appends
}

// New returns a coordinator that leads no partition yet.
func New(cfg Config, log zerolog.Logger) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Decompressor == nil {
		cfg.Decompressor = kgo.DefaultDecompressor()
	}
	c := &Coordinator{cfg: cfg, log: log, stop: make(chan struct{})}
	for i := range cfg.Partitions {
		c.shards = append(c.shards, &shard{id: i, groups: make(map[string]*group)})
	}
	return c, nil
}

// Start begins the periodic offset expiration. It does not block.
func (c *Coordinator) Start() {
	c.goFunc(c.retentionLoop)
}

// Close stops every group (answering their waiting requests with
// NOT_COORDINATOR) and waits for their appends to finish. It is safe to call
// more than once.
func (c *Coordinator) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		close(c.stop)
		for _, s := range c.shards {
			c.Resign(s.id)
		}
		c.wg.Wait()
	})
	return nil
}

// goFunc runs f on the coordinator's WaitGroup unless closing has begun.
func (c *Coordinator) goFunc(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// Partitions is the number of offsets topic partitions groups spread over.
func (c *Coordinator) Partitions() int32 { return c.cfg.Partitions }

// PartitionFor is the offsets partition of group.
func (c *Coordinator) PartitionFor(group string) int32 { return PartitionFor(group, c.cfg.Partitions) }

// PartitionFor is the offsets partition of group among partitions:
// groupId.hashCode with the sign bit cleared, modulo partitions. Kafka
// takes the absolute value instead (Utils.abs), so a group whose hash is
// negative has its offsets in another partition than Kafka would put
// them; clients find the coordinator with FindCoordinator either way, and
// existing data directories keep their groups where they are.
func PartitionFor(group string, partitions int32) int32 {
	return (javaStringHash(group) & 0x7fffffff) % partitions
}

// javaStringHash is Java's String.hashCode: s[0]*31^(n-1) + ... + s[n-1]
// over the UTF-16 code units of s, wrapping at 32 bits.
func javaStringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			h = 31*h + int32(0xd800+(r>>10))
			h = 31*h + int32(0xdc00+(r&0x3ff))
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// Elect makes this coordinator the leader of offsets partition id, whose log
// is p: it replays p from its log start to its high watermark in the
// background and then serves the groups found there. Until then their
// requests get COORDINATOR_LOAD_IN_PROGRESS. p must stay open until Resign
// or Close.
func (c *Coordinator) Elect(id int32, p partition.Partition) {
	if id < 0 || int(id) >= len(c.shards) {
		c.log.Error().Int32("partition", id).Int32("partitions", c.cfg.Partitions).Msg("an offsets partition beyond the configured count is not served")
		return
	}
	s := c.shards[id]
	s.mu.Lock()
	s.epoch++
	epoch := s.epoch
	s.retireLocked()
	s.state, s.p = shardLoading, p
	waitFor := append([]*group(nil), s.retiring...)
	s.mu.Unlock()
	started := c.goFunc(func() { c.load(s, epoch, p, waitFor) })
	if !started {
		s.mu.Lock()
		if s.epoch == epoch {
			s.state, s.p = shardUnowned, nil
		}
		s.mu.Unlock()
	}
}

// Resign stops serving offsets partition id: its groups answer their waiting
// requests with NOT_COORDINATOR, and later requests get NOT_COORDINATOR. It
// does not block; appends in flight finish in the background.
func (c *Coordinator) Resign(id int32) {
	if id < 0 || int(id) >= len(c.shards) {
		return
	}
	s := c.shards[id]
	s.mu.Lock()
	s.epoch++
	s.retireLocked()
	s.state, s.p = shardUnowned, nil
	s.mu.Unlock()
}

// retireLocked stops every group of the shard.
func (s *shard) retireLocked() {
	for id, g := range s.groups {
		close(g.stop)
		s.retiring = append(s.retiring, g)
		delete(s.groups, id)
	}
}

// load replays a partition and installs its groups, unless the shard was
// re-elected or resigned meanwhile.
func (c *Coordinator) load(s *shard, epoch uint64, p partition.Partition, waitFor []*group) {
	// Groups of an earlier term may still be appending; a replay that
	// started before their last append would miss it.
	for _, g := range waitFor {
		select {
		case <-g.exited:
		case <-c.stop:
			return
		}
	}
	start := time.Now()
	loaded, err := replay(p, c.cfg.Decompressor)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneRetiredLocked()
	if s.epoch != epoch {
		return
	}
	if err != nil {
		c.log.Error().Err(err).Int32("partition", s.id).Msg("loading offsets partition failed")
		s.state = shardFailed
		return
	}
	for _, lg := range loaded {
		g := c.newGroup(s, p, lg.id)
		g.restore(lg, time.Now())
		if !c.goFunc(g.run) {
			return
		}
		s.groups[g.id] = g
	}
	s.state = shardLeading
	ev := c.log.Debug()
	if len(loaded) > 0 {
		ev = c.log.Info()
	}
	ev.Int32("partition", s.id).Int("groups", len(loaded)).Dur("took", time.Since(start)).Msg("offsets partition loaded")
}

func (s *shard) pruneRetiredLocked() {
	kept := s.retiring[:0]
	for _, g := range s.retiring {
		select {
		case <-g.exited:
		default:
			kept = append(kept, g)
		}
	}
	clear(s.retiring[len(kept):])
	s.retiring = kept
}

// groupFor returns the running group id of the shard, creating it if create
// is set; errNoGroup if it does not exist and create is not set.
func (c *Coordinator) groupFor(s *shard, id string, create bool) (*group, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case shardLoading:
		return nil, ErrLoadInProgress
	case shardUnowned:
		return nil, ErrNotCoordinator
	case shardFailed:
		return nil, ErrCoordinatorNotAvailable
	}
	if g := s.groups[id]; g != nil {
		return g, nil
	}
	if !create {
		return nil, errNoGroup
	}
	g := c.newGroup(s, s.p, id)
	g.transition(StateEmpty, time.Now())
	if !c.goFunc(g.run) {
		return nil, ErrCoordinatorNotAvailable
	}
	s.groups[id] = g
	return g, nil
}

// maxRouteAttempts bounds how often an operation is re-routed because the
// group it found was stopping.
const maxRouteAttempts = 100

// do runs op on the goroutine of group id. If the group cannot take it, fail
// is called instead: with errNoGroup when the group does not exist and
// create is not set, else with the reason. Exactly one of op and fail runs.
func (c *Coordinator) do(id string, create bool, op func(*group), fail func(error)) {
	s := c.shards[c.PartitionFor(id)]
	for range maxRouteAttempts {
		g, err := c.groupFor(s, id, create)
		if err != nil {
			fail(err)
			return
		}
		select {
		case g.ops <- op:
			return
		case <-g.stopped:
			// Deleted, expired or resigned just now: look again.
		}
	}
	fail(ErrCoordinatorNotAvailable)
}

// groupsOf returns the running groups of every shard this coordinator
// leads, and whether some shard is still loading.
func (c *Coordinator) groupsOf() (groups []*group, loading bool) {
	for _, s := range c.shards {
		s.mu.Lock()
		if s.state == shardLoading {
			loading = true
		}
		for _, g := range s.groups {
			groups = append(groups, g)
		}
		s.mu.Unlock()
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].id < groups[j].id })
	return groups, loading
}

// broadcast runs op on every running group, waiting until each has taken it.
func (c *Coordinator) broadcast(op func(*group)) {
	groups, _ := c.groupsOf()
	for _, g := range groups {
		select {
		case g.ops <- op:
		case <-g.stopped:
		case <-c.stop:
			return
		}
	}
}

// retentionLoop expires offsets periodically.
func (c *Coordinator) retentionLoop() {
	t := time.NewTicker(c.cfg.RetentionCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.broadcast(func(g *group) { g.expireOffsets(time.Now()) })
		}
	}
}
