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

		OffsetsTopicPartitions:        50,
		GroupMinSessionTimeout:        6 * time.Second,
		GroupMaxSessionTimeout:        30 * time.Minute,
		GroupInitialRebalanceDelay:    3 * time.Second,
		OffsetsRetention:              7 * 24 * time.Hour,
		OffsetsRetentionCheckInterval: 10 * time.Minute,

		AutoLeaderRebalance:          true,
		LeaderImbalanceCheckInterval: 5 * time.Minute,
		LeaderImbalancePerBroker:     10,
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
	gc := c.groupConfig()
	if err := gc.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
