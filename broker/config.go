package broker

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// Config is a broker's configuration. Fill it from DefaultConfig and flags,
// then call Validate.
type Config struct {
	NodeID int32
	// Listen is the address Kafka clients connect to; port 0 picks one.
	Listen string
	// Advertise is the host:port given to clients in Metadata; empty means
	// the bound listen address.
	Advertise string
	DataDir   string

	MaxFrameBytes            int32
	AutoCreateTopics         bool
	DefaultPartitions        int32
	DefaultReplicationFactor int16
	MessageMaxBytes          int32
	// LogRetention and LogRetentionBytes are the defaults for topics that do
	// not set retention.ms and retention.bytes; negative means unlimited.
	LogRetention           time.Duration
	LogRetentionBytes      int64
	RetentionCheckInterval time.Duration
	// CleanerBackoff is how often compacted topics are checked for
	// compaction (log.cleaner.backoff.ms).
	CleanerBackoff time.Duration
	// LogAppendTime makes LogAppendTime the default message.timestamp.type.
	LogAppendTime bool
	// DiskFreeReserve is the free space, in bytes, kept on the data
	// directory's filesystem: below it produce and offset commits are
	// refused while reads go on (storage.BadgerOptions.FreeSpaceReserve).
	// Zero takes storage.DefaultFreeSpaceReserve; negative keeps none.
	DiskFreeReserve int64
	// MaxFetchSessions is how many incremental fetch sessions (KIP-227)
	// the broker keeps, as Kafka's max.incremental.fetch.session.cache.slots;
	// 0 turns them off.
	MaxFetchSessions int

	// Consumer groups, as Kafka's settings of the same names (see
	// coordinator.Config): offsets.topic.num.partitions,
	// group.min/max.session.timeout.ms, group.initial.rebalance.delay.ms,
	// offsets.retention.minutes, offsets.retention.check.interval.ms.
	OffsetsTopicPartitions        int32
	GroupMinSessionTimeout        time.Duration
	GroupMaxSessionTimeout        time.Duration
	GroupInitialRebalanceDelay    time.Duration
	OffsetsRetention              time.Duration
	OffsetsRetentionCheckInterval time.Duration
	// Transactions, as Kafka's settings of the same names (see
	// coordinator.TxnConfig): transaction.state.log.num.partitions,
	// transaction.max.timeout.ms, transactional.id.expiration.ms,
	// transaction.abort.timed.out.transaction.cleanup.interval.ms.
	TransactionStatePartitions    int32
	TransactionMaxTimeout         time.Duration
	TransactionalIDExpiration     time.Duration
	TransactionAbortCheckInterval time.Duration
	// AutoLeaderRebalance moves partition leadership back to preferred
	// replicas, as Kafka's auto.leader.rebalance.enable: every
	// LeaderImbalanceCheckInterval, a broker that leads partitions whose
	// preferred replica is live and leads fewer than
	// 100-LeaderImbalancePerBroker percent of its preferred partitions
	// hands them over.
	AutoLeaderRebalance          bool
	LeaderImbalanceCheckInterval time.Duration
	LeaderImbalancePerBroker     int
	// Peers maps every broker's ID to its address, this broker included,
	// for a cluster; empty runs a single broker. Raft traffic between
	// brokers shares these (Kafka) addresses.
	Peers map[int32]string

	// Timings are the failure detection and election settings.
	Timings Timings
}

// Timings are how fast brokers notice failures and elect leaders (see
// failover_partitions.go and failover_metadata.go). DefaultTimings holds the values
// brokers run with; tests may shorten them rather than wait.
type Timings struct {
	// PeerPingAfter is how long a peer broker may stay silent before it is
	// pinged; PeerDeadAfter, before it is taken for down (at once when its
	// connections are refused).
	PeerPingAfter, PeerDeadAfter time.Duration

	// ElectTick is how often the electors check every replica, besides
	// whenever a peer goes up or down.
	ElectTick time.Duration
	// RankDelay separates the replicas that stand for a vacant leadership,
	// in replica-set order, so that they do not split the vote.
	RankDelay time.Duration
	// CampaignPause is the least time between two elections one replica
	// starts.
	CampaignPause time.Duration
	// SilentLeader is how long a follower waits for a leader whose broker
	// is up but that it does not hear from.
	SilentLeader time.Duration
	// LeaderlessGrace is how long a follower that knows no leader waits
	// when the metadata names a live one, which should reach it first.
	LeaderlessGrace time.Duration
	// VoteGrace is how long after granting a vote or stepping down a
	// replica does not stand: an election is under way.
	VoteGrace time.Duration

	// Raft's own timers, the fallback behind the failure detector:
	// partition groups heartbeat every PartitionHeartbeat/10 to /5 when
	// idle and elect on their own after PartitionHeartbeat of silence; a
	// partition leader that cannot reach a majority for PartitionLease
	// steps down. The metadata group, a single group, heartbeats more often
	// (MetadataHeartbeat, MetadataLease).
	PartitionHeartbeat, PartitionLease time.Duration
	MetadataHeartbeat, MetadataLease   time.Duration
}

// DefaultTimings are the timings brokers run with.
func DefaultTimings() Timings {
	return Timings{
		PeerPingAfter:      500 * time.Millisecond,
		PeerDeadAfter:      1500 * time.Millisecond,
		ElectTick:          500 * time.Millisecond,
		RankDelay:          2 * time.Second,
		CampaignPause:      3 * time.Second,
		SilentLeader:       15 * time.Second,
		LeaderlessGrace:    10 * time.Second,
		VoteGrace:          2 * time.Second,
		PartitionHeartbeat: 30 * time.Second,
		PartitionLease:     10 * time.Second,
		MetadataHeartbeat:  1500 * time.Millisecond,
		MetadataLease:      time.Second,
	}
}

// validate checks that every timing is positive and that each Raft lease
// fits within its heartbeat timeout, as Raft requires.
func (t Timings) validate() error {
	var errs []error
	// In field order, so that the same mistakes always read the same.
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"peer ping after", t.PeerPingAfter}, {"peer dead after", t.PeerDeadAfter}, {"elect tick", t.ElectTick},
		{"rank delay", t.RankDelay}, {"campaign pause", t.CampaignPause}, {"silent leader", t.SilentLeader},
		{"leaderless grace", t.LeaderlessGrace}, {"vote grace", t.VoteGrace},
		{"partition heartbeat", t.PartitionHeartbeat}, {"partition lease", t.PartitionLease},
		{"metadata heartbeat", t.MetadataHeartbeat}, {"metadata lease", t.MetadataLease},
	} {
		if f.d <= 0 {
			errs = append(errs, fmt.Errorf("timing %s %v must be positive", f.name, f.d))
		}
	}
	if t.PeerDeadAfter < t.PeerPingAfter {
		errs = append(errs, fmt.Errorf("peer dead after %v is shorter than peer ping after %v", t.PeerDeadAfter, t.PeerPingAfter))
	}
	if t.PartitionLease > t.PartitionHeartbeat {
		errs = append(errs, fmt.Errorf("partition lease %v exceeds the partition heartbeat timeout %v", t.PartitionLease, t.PartitionHeartbeat))
	}
	if t.MetadataLease > t.MetadataHeartbeat {
		errs = append(errs, fmt.Errorf("metadata lease %v exceeds the metadata heartbeat timeout %v", t.MetadataLease, t.MetadataHeartbeat))
	}
	return errors.Join(errs...)
}

// DefaultConfig returns the embedded default: one broker on 127.0.0.1:9092
// with its data in ./data, Kafka's defaults elsewhere.
func DefaultConfig() Config {
	return Config{
		NodeID:                   1,
		Listen:                   "127.0.0.1:9092",
		DataDir:                  "data",
		MaxFrameBytes:            100 << 20,
		AutoCreateTopics:         true,
		DefaultPartitions:        1,
		DefaultReplicationFactor: 1,
		MessageMaxBytes:          1048588,
		LogRetention:             7 * 24 * time.Hour,
		LogRetentionBytes:        -1,
		RetentionCheckInterval:   5 * time.Minute,
		CleanerBackoff:           15 * time.Second,
		MaxFetchSessions:         1000,

		OffsetsTopicPartitions:        50,
		GroupMinSessionTimeout:        6 * time.Second,
		GroupMaxSessionTimeout:        30 * time.Minute,
		GroupInitialRebalanceDelay:    3 * time.Second,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,

		TransactionStatePartitions:    50,
		TransactionMaxTimeout:         15 * time.Minute,
		TransactionalIDExpiration:     7 * 24 * time.Hour,
		TransactionAbortCheckInterval: 10 * time.Second,

		AutoLeaderRebalance:          true,
		LeaderImbalanceCheckInterval: 5 * time.Minute,
		LeaderImbalancePerBroker:     10,

		Timings: DefaultTimings(),
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeID < 0 {
		errs = append(errs, fmt.Errorf("node id %d must not be negative", c.NodeID))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("advertised address %q: %w", c.Advertise, err))
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data directory must be set"))
	} else if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	if c.MaxFrameBytes < 1024 {
		errs = append(errs, fmt.Errorf("max frame bytes %d is below 1024", c.MaxFrameBytes))
	}
	if c.DefaultPartitions < 1 {
		errs = append(errs, fmt.Errorf("default partitions %d must be at least 1", c.DefaultPartitions))
	}
	if c.DefaultReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("default replication factor %d must be at least 1", c.DefaultReplicationFactor))
	}
	if c.MessageMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("message max bytes %d must not be negative", c.MessageMaxBytes))
	}
	if len(c.Peers) > 0 {
		if _, ok := c.Peers[c.NodeID]; !ok {
			errs = append(errs, fmt.Errorf("peers do not include this broker's id %d", c.NodeID))
		}
		for id, addr := range c.Peers {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				errs = append(errs, fmt.Errorf("peer %d address %q: %w", id, addr, err))
			}
		}
	}
	if c.MaxFetchSessions < 0 {
		errs = append(errs, fmt.Errorf("max fetch sessions %d must not be negative", c.MaxFetchSessions))
	}
	if c.CleanerBackoff <= 0 {
		errs = append(errs, fmt.Errorf("log cleaner backoff %v must be positive", c.CleanerBackoff))
	}
	if c.RetentionCheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("retention check interval %v must be positive", c.RetentionCheckInterval))
	}
	if c.LeaderImbalanceCheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("leader imbalance check interval %v must be positive", c.LeaderImbalanceCheckInterval))
	}
	if c.LeaderImbalancePerBroker < 0 || c.LeaderImbalancePerBroker > 100 {
		errs = append(errs, fmt.Errorf("leader imbalance per broker percentage %d must be between 0 and 100", c.LeaderImbalancePerBroker))
	}
	if err := c.Timings.validate(); err != nil {
		errs = append(errs, err)
	}
	gc := c.groupConfig()
	if err := gc.Validate(); err != nil {
		errs = append(errs, err)
	}
	tc := c.txnConfig()
	if err := tc.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
