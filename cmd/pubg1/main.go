// Command pubg1 is the PubG1 broker and its tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/pubg1/pubg1/broker"
	"github.com/rs/zerolog"
)

type cli struct {
	LogLevel  string      `name:"log-level" default:"info" enum:"debug,info,warn,error" env:"PUBG1_LOG_LEVEL" help:"Log level (${enum})."`
	LogFormat string      `name:"log-format" default:"console" enum:"console,json" env:"PUBG1_LOG_FORMAT" help:"Log format (${enum})."`
	Version   versionFlag `name:"version" help:"Print the version and exit."`

	VersionCmd versionCmd `cmd:"" name:"version" help:"Print the version, commit and Go version; --verbose adds the supported Kafka APIs."`

	Serve   serveCmd   `cmd:"" help:"Run a broker."`
	Cluster clusterCmd `cmd:"" help:"Run a local cluster; show and check any Kafka-compatible cluster."`
	Bench   benchCmd   `cmd:"" help:"Benchmark a Kafka-compatible cluster: open-loop load, publish and end-to-end latency, a data audit, faults, plots, side-by-side comparison."`
	Topic   topicCmd   `cmd:"" help:"Create, list, describe, alter and delete topics, produce and consume, on any Kafka-compatible cluster."`
	Group   groupCmd   `cmd:"" help:"List, describe and delete consumer groups of any Kafka-compatible cluster, and reset their offsets."`
	Stream  streamCmd  `cmd:"" help:"Compute windowed aggregates (count, sum, min, max, avg, count-distinct) of a topic's records into another topic, exactly once."`
}

type serveCmd struct {
	Listen            string        `default:"127.0.0.1:9092" env:"PUBG1_LISTEN" help:"Address Kafka clients connect to."`
	Advertise         string        `env:"PUBG1_ADVERTISE" help:"host:port given to clients in Metadata (default: the listen address)."`
	Data              string        `default:"data" env:"PUBG1_DATA" help:"Data directory."`
	ID                int32         `name:"id" default:"1" env:"PUBG1_ID" help:"Broker (node) ID."`
	Peers             string        `name:"peers" env:"PUBG1_PEERS" help:"Every broker of a cluster as ID=HOST:PORT,... (this one included); Raft traffic shares these addresses. Empty runs a single broker."`
	AutoCreateTopics  bool          `name:"auto-create-topics" default:"true" negatable:"" env:"PUBG1_AUTO_CREATE_TOPICS" help:"Create unknown topics on Metadata requests that allow it."`
	NumPartitions     int32         `name:"num-partitions" default:"1" env:"PUBG1_NUM_PARTITIONS" help:"Partitions of auto-created topics and of CreateTopics without a count."`
	MessageMaxBytes   int32         `name:"message-max-bytes" default:"1048588" env:"PUBG1_MESSAGE_MAX_BYTES" help:"Default max.message.bytes of topics."`
	MaxRequestBytes   int32         `name:"max-request-bytes" default:"104857600" env:"PUBG1_MAX_REQUEST_BYTES" help:"Largest request frame accepted (socket.request.max.bytes)."`
	LogRetention      time.Duration `name:"log-retention" default:"168h" env:"PUBG1_LOG_RETENTION" help:"Default retention.ms of topics; negative for unlimited."`
	LogRetentionBytes int64         `name:"log-retention-bytes" default:"-1" env:"PUBG1_LOG_RETENTION_BYTES" help:"Default retention.bytes of topics; -1 for unlimited."`
	RetentionCheck    time.Duration `name:"retention-check-interval" default:"5m" env:"PUBG1_RETENTION_CHECK_INTERVAL" help:"How often retention is applied."`
	CleanerBackoff    time.Duration `name:"log-cleaner-backoff" default:"15s" env:"PUBG1_LOG_CLEANER_BACKOFF" help:"How often compacted topics (cleanup.policy=compact, __consumer_offsets) are checked for compaction."`
	LogAppendTime     bool          `name:"log-append-time" env:"PUBG1_LOG_APPEND_TIME" help:"Make LogAppendTime the default message.timestamp.type."`
	DiskReserve       int64         `name:"disk-free-reserve" default:"134217728" env:"PUBG1_DISK_FREE_RESERVE" help:"Free bytes kept on the data directory's filesystem: below them produce and offset commits are refused (KAFKA_STORAGE_ERROR) while reads go on, until space is freed; -1 for none."`
	MaxFetchSessions  int           `name:"max-fetch-sessions" default:"1000" env:"PUBG1_MAX_FETCH_SESSIONS" help:"Incremental fetch sessions (KIP-227) kept, as max.incremental.fetch.session.cache.slots; 0 turns them off."`
	DebugListen       string        `name:"debug-listen" env:"PUBG1_DEBUG_LISTEN" help:"Serve Go pprof profiles over HTTP on this address (off when empty)."`

	OffsetsTopicPartitions     int32         `name:"offsets-topic-partitions" default:"50" env:"PUBG1_OFFSETS_TOPIC_PARTITIONS" help:"Partitions of __consumer_offsets when it is created (offsets.topic.num.partitions)."`
	GroupMinSessionTimeout     time.Duration `name:"group-min-session-timeout" default:"6s" env:"PUBG1_GROUP_MIN_SESSION_TIMEOUT" help:"Shortest session timeout a group member may ask for."`
	GroupMaxSessionTimeout     time.Duration `name:"group-max-session-timeout" default:"30m" env:"PUBG1_GROUP_MAX_SESSION_TIMEOUT" help:"Longest session timeout a group member may ask for."`
	GroupInitialRebalanceDelay time.Duration `name:"group-initial-rebalance-delay" default:"3s" env:"PUBG1_GROUP_INITIAL_REBALANCE_DELAY" help:"How long the first rebalance of an empty group waits for more members."`
	OffsetsRetention           time.Duration `name:"offsets-retention" default:"168h" env:"PUBG1_OFFSETS_RETENTION" help:"How long the committed offsets of an empty group are kept (offsets.retention.minutes)."`
	OffsetsRetentionCheck      time.Duration `name:"offsets-retention-check-interval" default:"10m" env:"PUBG1_OFFSETS_RETENTION_CHECK_INTERVAL" help:"How often expired offsets are removed."`

	TxnStatePartitions    int32         `name:"transaction-state-partitions" default:"50" env:"PUBG1_TRANSACTION_STATE_PARTITIONS" help:"Partitions of __transaction_state when it is created (transaction.state.log.num.partitions)."`
	TxnMaxTimeout         time.Duration `name:"transaction-max-timeout" default:"15m" env:"PUBG1_TRANSACTION_MAX_TIMEOUT" help:"Longest transaction timeout a producer may ask for (transaction.max.timeout.ms)."`
	TxnIDExpiration       time.Duration `name:"transactional-id-expiration" default:"168h" env:"PUBG1_TRANSACTIONAL_ID_EXPIRATION" help:"How long an idle transactional ID is kept (transactional.id.expiration.ms)."`
	TxnAbortCheckInterval time.Duration `name:"transaction-abort-check-interval" default:"10s" env:"PUBG1_TRANSACTION_ABORT_CHECK_INTERVAL" help:"How often timed-out transactions are aborted (transaction.abort.timed.out.transaction.cleanup.interval.ms)."`

	AutoLeaderRebalance    bool          `name:"auto-leader-rebalance" default:"true" negatable:"" env:"PUBG1_AUTO_LEADER_REBALANCE" help:"Move partition leadership back to preferred replicas (auto.leader.rebalance.enable)."`
	LeaderImbalanceCheck   time.Duration `name:"leader-imbalance-check-interval" default:"5m" env:"PUBG1_LEADER_IMBALANCE_CHECK_INTERVAL" help:"How often leadership is checked against the preferred replicas."`
	LeaderImbalancePercent int           `name:"leader-imbalance-per-broker-percentage" default:"10" env:"PUBG1_LEADER_IMBALANCE_PER_BROKER_PERCENTAGE" help:"Share of a broker's preferred partitions led elsewhere above which they are moved back."`
}

func (s *serveCmd) Run(log zerolog.Logger) error {
	cfg := broker.DefaultConfig()
	cfg.NodeID, cfg.Listen, cfg.Advertise, cfg.DataDir = s.ID, s.Listen, s.Advertise, s.Data
	cfg.AutoCreateTopics, cfg.DefaultPartitions = s.AutoCreateTopics, s.NumPartitions
	cfg.MessageMaxBytes, cfg.MaxFrameBytes = s.MessageMaxBytes, s.MaxRequestBytes
	cfg.LogRetention, cfg.LogRetentionBytes, cfg.RetentionCheckInterval = s.LogRetention, s.LogRetentionBytes, s.RetentionCheck
	cfg.CleanerBackoff = s.CleanerBackoff
	cfg.DiskFreeReserve = s.DiskReserve
	cfg.MaxFetchSessions = s.MaxFetchSessions
	cfg.LogAppendTime = s.LogAppendTime
	cfg.OffsetsTopicPartitions = s.OffsetsTopicPartitions
	cfg.GroupMinSessionTimeout, cfg.GroupMaxSessionTimeout = s.GroupMinSessionTimeout, s.GroupMaxSessionTimeout
	cfg.GroupInitialRebalanceDelay = s.GroupInitialRebalanceDelay
	cfg.OffsetsRetention, cfg.OffsetsRetentionCheckInterval = s.OffsetsRetention, s.OffsetsRetentionCheck
	cfg.TransactionStatePartitions, cfg.TransactionMaxTimeout = s.TxnStatePartitions, s.TxnMaxTimeout
	cfg.TransactionalIDExpiration, cfg.TransactionAbortCheckInterval = s.TxnIDExpiration, s.TxnAbortCheckInterval
	cfg.AutoLeaderRebalance, cfg.LeaderImbalanceCheckInterval = s.AutoLeaderRebalance, s.LeaderImbalanceCheck
	cfg.LeaderImbalancePerBroker = s.LeaderImbalancePercent
	if err := s.check(); err != nil {
		return err
	}
	peers, err := parsePeers(s.Peers)
	if err != nil {
		return err
	}
	if _, ok := peers[s.ID]; len(peers) > 0 && !ok {
		return fmt.Errorf("--peers does not list this broker's --id %d", s.ID)
	}
	cfg.Peers = peers
	if len(peers) > 0 && s.Advertise == "" {
		cfg.Advertise = peers[s.ID]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Every address is bound before the broker creates its data
	// directory, so that a taken port leaves nothing behind.
	if s.DebugListen != "" {
		stopDebug, err := serveDebug(s.DebugListen, log)
		if err != nil {
			return fmt.Errorf("--debug-listen %s: %w", s.DebugListen, listenCause(err))
		}
		defer stopDebug()
	}
	b, err := broker.New(cfg, log)
	if err != nil {
		if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Op == "listen" {
			return fmt.Errorf("--listen %s: %w", s.Listen, listenCause(err))
		}
		return err
	}
	if err := b.Start(); err != nil {
		b.Close()
		return err
	}
	<-ctx.Done()
	log.Info().Msg("shutting down")
	if err := b.Close(); err != nil {
		return fmt.Errorf("closing broker: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}

func newLogger(level, format string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	var log zerolog.Logger
	if format == "json" {
		log = zerolog.New(os.Stderr)
	} else {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: logTimeFormat, NoColor: !isTerminal(os.Stderr)})
	}
	return log.Level(lvl).Hook(msTimestamp{})
}

// logTimeFormat is RFC 3339 to the millisecond: a failover takes a
// second or two.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// msTimestamp stamps each log event with the time to the millisecond (the
// logger's own timestamps stop at the second).
type msTimestamp struct{}

func (msTimestamp) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format(logTimeFormat))
}

// isTerminal reports whether f is a terminal; colours are only for those.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func main() { os.Exit(run(os.Args[1:])) }

// run runs the command args name and returns the exit code: 0 on
// success, 1 when the command fails, 2 on a usage error.
func run(args []string) int {
	var c cli
	parser := kong.Must(&c, kong.Name("pubg1"), kong.Description("PubG1: a Kafka-compatible log broker."),
		// Values such as --acks -1 and --partitions -1 start with a hyphen.
		kong.WithHyphenPrefixedParameters(true))
	kctx, err := parser.Parse(args)
	if err != nil {
		// The error first, in one line, and where to find the usage
		// rather than all of it.
		help := "pubg1"
		if pe, ok := errors.AsType[*kong.ParseError](err); ok && pe.Context != nil {
			if n := pe.Context.Selected(); n != nil {
				help = commandPath(n)
			}
		}
		fmt.Fprintf(os.Stderr, "pubg1: %s\nrun \"%s --help\" for usage\n", errorLine(err), help)
		return 2
	}
	log := newLogger(c.LogLevel, c.LogFormat)
	kctx.BindTo(log, (*zerolog.Logger)(nil))
	if err := kctx.Run(); err != nil {
		if c.LogFormat == "json" {
			log.Error().Str("error", errorLine(err)).Msg("pubg1 failed")
		} else {
			fmt.Fprintf(os.Stderr, "pubg1: %s\n", errorLine(err))
		}
		return 1
	}
	return 0
}

// commandPath is the command line that selects n, by names only: kong's
// own paths add a command's aliases in parentheses.
func commandPath(n *kong.Node) string {
	var names []string
	for ; n != nil; n = n.Parent {
		if n.Type == kong.CommandNode || n.Parent == nil {
			names = append(names, n.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(names, " ")
}

// parsePeers reads "1=host:port,2=host:port".
func parsePeers(s string) (map[int32]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	peers := make(map[int32]string)
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseInt(id, 10, 32)
		if !ok || err != nil || addr == "" {
			return nil, fmt.Errorf("--peers: %q is not ID=HOST:PORT", part)
		}
		if _, dup := peers[int32(n)]; dup {
			return nil, fmt.Errorf("--peers: broker %d listed twice", n)
		}
		peers[int32(n)] = addr
	}
	return peers, nil
}
