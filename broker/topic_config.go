package broker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pubg1/pubg1/broker/partition"
)

// Config types as DescribeConfigs v3+ reports them.
const (
	typeBoolean int8 = 1
	typeString  int8 = 2
	typeInt     int8 = 3
	typeLong    int8 = 5
	typeDouble  int8 = 6
	typeList    int8 = 7
)

// Config sources as DescribeConfigs v1+ reports them.
const (
	sourceTopic        int8 = 1 // DYNAMIC_TOPIC_CONFIG
	sourceStaticBroker int8 = 4 // STATIC_BROKER_CONFIG
	sourceDefault      int8 = 5 // DEFAULT_CONFIG
)

// topicConfigDef describes one topic-level config: its type, its default
// (possibly taken from the broker's configuration), and extra validation.
type topicConfigDef struct {
	typ           int8
	def           func(c *Config) string
	brokerSynonym string // the broker config it defaults from, if any
	check         func(v string) error
	doc           string
}

func constant(v string) func(*Config) string { return func(*Config) string { return v } }

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
	}
}

func atLeast(min int64) func(string) error {
	return func(v string) error {
		n, _ := strconv.ParseInt(v, 10, 64)
		if n < min {
			return fmt.Errorf("must be at least %d", min)
		}
		return nil
	}
}

const maxLong = "9223372036854775807"

// topicConfigs lists every topic config PubG1 knows, with Kafka's names and
// defaults. Configs that only matter to features PubG1 does not have
// (segment files, compaction tuning) are accepted and reported so that
// tools setting them keep working.
var topicConfigs = map[string]topicConfigDef{
	"cleanup.policy": {typ: typeList, def: constant("delete"), brokerSynonym: "log.cleanup.policy",
		check: func(v string) error {
			for _, p := range strings.Split(v, ",") {
				if err := oneOf("delete", "compact")(strings.TrimSpace(p)); err != nil {
					return err
				}
			}
			return nil
		}, doc: "delete or compact (or both): what happens to old log data"},
	"compression.type": {typ: typeString, def: constant("producer"), brokerSynonym: "compression.type",
		check: oneOf("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
		doc:   "batches are stored as the producer compressed them"},
	"delete.retention.ms":       {typ: typeLong, def: constant("86400000"), check: atLeast(0)},
	"file.delete.delay.ms":      {typ: typeLong, def: constant("60000"), check: atLeast(0)},
	"flush.messages":            {typ: typeLong, def: constant(maxLong), check: atLeast(1)},
	"flush.ms":                  {typ: typeLong, def: constant(maxLong), check: atLeast(0)},
	"index.interval.bytes":      {typ: typeInt, def: constant("4096"), check: atLeast(0)},
	"max.compaction.lag.ms":     {typ: typeLong, def: constant(maxLong), check: atLeast(1)},
	"min.compaction.lag.ms":     {typ: typeLong, def: constant("0"), check: atLeast(0)},
	"min.cleanable.dirty.ratio": {typ: typeDouble, def: constant("0.5")},
	"max.message.bytes": {typ: typeInt, brokerSynonym: "message.max.bytes", check: atLeast(0),
		def: func(c *Config) string { return strconv.Itoa(int(c.MessageMaxBytes)) },
		doc: "the largest record batch size allowed"},
	"message.timestamp.type": {typ: typeString, brokerSynonym: "log.message.timestamp.type",
		def: func(c *Config) string {
			if c.LogAppendTime {
				return "LogAppendTime"
			}
			return "CreateTime"
		},
		check: oneOf("CreateTime", "LogAppendTime"),
		doc:   "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock"},
	"message.timestamp.difference.max.ms": {typ: typeLong, def: constant(maxLong), check: atLeast(0)},
	"message.timestamp.before.max.ms":     {typ: typeLong, def: constant(maxLong), check: atLeast(0)},
	"message.timestamp.after.max.ms":      {typ: typeLong, def: constant(maxLong), check: atLeast(0)},
	"min.insync.replicas":                 {typ: typeInt, def: constant("1"), brokerSynonym: "min.insync.replicas", check: atLeast(1)},
	"preallocate":                         {typ: typeBoolean, def: constant("false")},
	"retention.bytes": {typ: typeLong, brokerSynonym: "log.retention.bytes", check: atLeast(-1),
		def: func(c *Config) string { return strconv.FormatInt(c.LogRetentionBytes, 10) },
		doc: "delete the oldest batches while the partition is larger than this; -1 for no limit"},
	"retention.ms": {typ: typeLong, brokerSynonym: "log.retention.ms", check: atLeast(-1),
		def: func(c *Config) string { return strconv.FormatInt(durationMillis(c.LogRetention), 10) },
		doc: "delete batches whose newest timestamp is older than this; -1 for no limit"},
	"segment.bytes":                           {typ: typeInt, def: constant("1073741824"), check: atLeast(14)},
	"segment.index.bytes":                     {typ: typeInt, def: constant("10485760"), check: atLeast(4)},
	"segment.jitter.ms":                       {typ: typeLong, def: constant("0"), check: atLeast(0)},
	"segment.ms":                              {typ: typeLong, def: constant("604800000"), check: atLeast(1)},
	"unclean.leader.election.enable":          {typ: typeBoolean, def: constant("false")},
	"message.downconversion.enable":           {typ: typeBoolean, def: constant("true")},
	"local.retention.ms":                      {typ: typeLong, def: constant("-2")},
	"local.retention.bytes":                   {typ: typeLong, def: constant("-2")},
	"remote.storage.enable":                   {typ: typeBoolean, def: constant("false"), check: oneOf("false")},
	"follower.replication.throttled.replicas": {typ: typeList, def: constant("")},
	"leader.replication.throttled.replicas":   {typ: typeList, def: constant("")},
}

func durationMillis(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// validateTopicConfig checks one name=value pair.
func validateTopicConfig(name, value string) error {
	def, ok := topicConfigs[name]
	if !ok {
		return fmt.Errorf("%w: unknown topic config name: %s", ErrInvalidTopicConfig, name)
	}
	var err error
	switch def.typ {
	case typeBoolean:
		if value != "true" && value != "false" {
			err = fmt.Errorf("must be true or false")
		}
	case typeInt:
		_, err = strconv.ParseInt(value, 10, 32)
	case typeLong:
		_, err = strconv.ParseInt(value, 10, 64)
	case typeDouble:
		_, err = strconv.ParseFloat(value, 64)
	}
	if err == nil && def.check != nil {
		err = def.check(value)
	}
	if err != nil {
		return fmt.Errorf("%w: invalid value %q for configuration %s: %w", ErrInvalidTopicConfig, value, name, err)
	}
	return nil
}

// topicConfigNames lists the known topic configs in name order.
func topicConfigNames() []string {
	names := make([]string, 0, len(topicConfigs))
	for n := range topicConfigs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// effectiveConfig is a topic's configuration with defaults filled in, in the
// form the data path uses.
type effectiveConfig struct {
	retention      time.Duration // negative: unlimited
	retentionBytes int64
	logAppendTime  bool
	maxMessage     int32
	deletePolicy   bool
	compactPolicy  bool
	compact        partition.CompactOptions
	minInSync      int
}

func (b *Broker) effective(overrides map[string]string) effectiveConfig {
	get := func(name string) string {
		if v, ok := overrides[name]; ok {
			return v
		}
		return topicConfigs[name].def(&b.cfg)
	}
	ms, _ := strconv.ParseInt(get("retention.ms"), 10, 64)
	ec := effectiveConfig{retention: -1, deletePolicy: strings.Contains(get("cleanup.policy"), "delete"),
		compactPolicy: strings.Contains(get("cleanup.policy"), "compact")}
	deleteRetention, _ := strconv.ParseInt(get("delete.retention.ms"), 10, 64)
	minLag, _ := strconv.ParseInt(get("min.compaction.lag.ms"), 10, 64)
	ec.compact.DeleteRetention = time.Duration(deleteRetention) * time.Millisecond
	ec.compact.MinLag = time.Duration(minLag) * time.Millisecond
	ec.compact.DirtyRatio, _ = strconv.ParseFloat(get("min.cleanable.dirty.ratio"), 64)
	if ms >= 0 {
		ec.retention = time.Duration(ms) * time.Millisecond
	}
	ec.retentionBytes, _ = strconv.ParseInt(get("retention.bytes"), 10, 64)
	ec.logAppendTime = get("message.timestamp.type") == "LogAppendTime"
	mm, _ := strconv.ParseInt(get("max.message.bytes"), 10, 32)
	ec.maxMessage = int32(mm)
	minISR, _ := strconv.Atoi(get("min.insync.replicas"))
	ec.minInSync = max(minISR, 1)
	return ec
}
