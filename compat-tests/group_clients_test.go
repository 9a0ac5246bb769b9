package compattests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupScenarios run each client's consumer group through the same
// scenario; they are the matrix's group-rebalance row.
var groupScenarios = map[string]func(t testing.TB){
	"franz-go": func(t testing.TB) { runGroupScenario(t, 3, kgoLauncher(kgo.CooperativeStickyBalancer())) },
	"sarama":   func(t testing.TB) { runGroupScenario(t, 2, saramaLauncher(sarama.V3_6_0_0)) },
	"kafka-go": kafkaGoGroupScenario,
	"kcat":     kcatGroupScenario,
	// confluent-kafka runs librdkafka with the cooperative-sticky assignor.
	"kafka-python": func(t testing.TB) { runGroupScenario(t, 2, pythonLauncher(t, "kafka-python", "kafka")) },
	"confluent":    func(t testing.TB) { runGroupScenario(t, 2, pythonLauncher(t, "confluent", "confluent_kafka")) },
	"kafkajs":      kafkajsGroupScenario,
}

// TestGroupFranzRange runs franz-go with the eager range balancer (the
// matrix runs its cooperative-sticky default).
func TestGroupFranzRange(t *testing.T) {
	runGroupScenario(t, 2, kgoLauncher(kgo.RangeBalancer()))
}

// TestGroupSaramaOldVersions runs sarama's ConsumerGroup at Kafka 0.11's
// protocol versions, whose group requests are the oldest sarama sends (the
// matrix runs a recent version).
func TestGroupSaramaOldVersions(t *testing.T) {
	runGroupScenario(t, 2, saramaLauncher(sarama.V0_11_0_0))
}

// kcatGroupScenario runs kcat's balanced consumer (-G, librdkafka with its
// default range assignor).
func kcatGroupScenario(t testing.TB) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (%v); install the Debian package kcat", err)
	}
	runGroupScenario(t, 2, func(t testing.TB, ctx context.Context, b *brokerProc, group, topic string, id int, recs chan<- consumed) groupMember {
		return startProcMember(t, ctx, "kcat", id, recs, kcat, "-b", b.Addr(), "-G", group, topic, "-q", "-u",
			"-f", `{"p":%p,"o":%o}\n`, "-X", fmt.Sprintf("client.id=kcat-%d", id), "-X", "auto.offset.reset=earliest",
			"-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", "-X", "auto.commit.interval.ms=200")
	})
}

func kafkajsGroupScenario(t testing.TB) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (%v); install the Debian package nodejs", err)
	}
	script, err := filepath.Abs(filepath.Join("js", "group_consumer.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("js", "node_modules", "kafkajs")); err != nil {
		t.Fatalf("kafkajs is not installed (%v); run npm ci --prefix compat-tests/js", err)
	}
	runGroupScenario(t, 2, func(t testing.TB, ctx context.Context, b *brokerProc, group, topic string, id int, recs chan<- consumed) groupMember {
		return startProcMember(t, ctx, "kafkajs", id, recs, node, script, b.Addr(), group, topic, fmt.Sprintf("kafkajs-%d", id))
	})
}

// systemPython is Debian's python, which has the python3-kafka and
// python3-confluent-kafka packages.
const systemPython = "/usr/bin/python3"

func pythonLauncher(t testing.TB, client, module string) memberLauncher {
	t.Helper()
	if out, err := exec.Command(systemPython, "-c", "import "+module).CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import %s (%v: %s); install the Debian packages python3-kafka and python3-confluent-kafka", systemPython, module, err, out)
	}
	script, err := filepath.Abs(filepath.Join("python", "group_consumer.py"))
	if err != nil {
		t.Fatal(err)
	}
	return func(t testing.TB, ctx context.Context, b *brokerProc, group, topic string, id int, recs chan<- consumed) groupMember {
		return startProcMember(t, ctx, client, id, recs, systemPython, script, client, b.Addr(), group, topic, fmt.Sprintf("%s-%d", client, id))
	}
}

// loopMember is an in-process member whose consuming goroutine runs until
// its context is cancelled; Stop then commits and leaves.
type loopMember struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
	close  func() error

	mu   sync.Mutex
	errs []error
}

func (m *loopMember) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) < 10 {
		m.errs = append(m.errs, err)
	}
}

func (m *loopMember) Stop(t testing.TB) {
	t.Helper()
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(groupStopWait):
		t.Fatalf("%s still consuming %v after it was stopped", m.name, groupStopWait)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("closing %s: %v", m.name, err)
		}
	case <-time.After(groupStopWait):
		t.Fatalf("closing %s took over %v", m.name, groupStopWait)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) > 0 {
		t.Logf("%s saw errors while consuming: %v", m.name, m.errs)
	}
}

func kgoLauncher(balancer kgo.GroupBalancer) memberLauncher {
	return func(t testing.TB, ctx context.Context, b *brokerProc, group, topic string, id int, recs chan<- consumed) groupMember {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(b.Addr()),
			kgo.ClientID(fmt.Sprintf("franz-%d", id)),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.Balancers(balancer),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.SessionTimeout(6*time.Second),
			kgo.HeartbeatInterval(500*time.Millisecond),
			kgo.AutoCommitMarks(),
			kgo.AutoCommitInterval(200*time.Millisecond),
			kgo.FetchMaxWait(500*time.Millisecond),
		)
		if err != nil {
			t.Fatalf("franz-go client: %v", err)
		}
		pctx, cancel := context.WithCancel(ctx)
		m := &loopMember{name: fmt.Sprintf("franz-go member %d", id), cancel: cancel, done: make(chan struct{})}
		m.close = func() error {
			defer cl.Close()
			cctx, ccancel := context.WithTimeout(ctx, groupStopWait)
			defer ccancel()
			if err := cl.CommitMarkedOffsets(cctx); err != nil {
				return err
			}
			cl.LeaveGroup()
			return nil
		}
		t.Cleanup(func() { cancel(); <-m.done; cl.Close() })
		go func() {
			defer close(m.done)
			for {
				fs := cl.PollFetches(pctx)
				if pctx.Err() != nil {
					return
				}
				fs.EachError(func(topic string, p int32, err error) { m.fail(fmt.Errorf("%s/%d: %w", topic, p, err)) })
				fs.EachRecord(func(r *kgo.Record) {
					recs <- consumed{member: id, partition: r.Partition, offset: r.Offset}
					cl.MarkCommitRecords(r)
				})
			}
		}()
		return m
	}
}

func saramaLauncher(version sarama.KafkaVersion) memberLauncher {
	return func(t testing.TB, ctx context.Context, b *brokerProc, group, topic string, id int, recs chan<- consumed) groupMember {
		cfg := sarama.NewConfig()
		cfg.Version = version
		cfg.ClientID = fmt.Sprintf("sarama-%d", id)
		cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
		cfg.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
		cfg.Consumer.Group.Session.Timeout = 6 * time.Second
		cfg.Consumer.Group.Heartbeat.Interval = 500 * time.Millisecond
		cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
		cfg.Consumer.Group.Rebalance.Retry.Backoff = 200 * time.Millisecond
		cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
		cg, err := sarama.NewConsumerGroup([]string{b.Addr()}, group, cfg)
		if err != nil {
			t.Fatalf("sarama consumer group: %v", err)
		}
		pctx, cancel := context.WithCancel(ctx)
		m := &loopMember{name: fmt.Sprintf("sarama member %d", id), cancel: cancel, done: make(chan struct{})}
		closeOnce := sync.OnceValue(cg.Close)
		m.close = closeOnce
		t.Cleanup(func() { cancel(); <-m.done; _ = closeOnce() })
		h := saramaHandler{id: id, recs: recs}
		go func() {
			defer close(m.done)
			for pctx.Err() == nil {
				if err := cg.Consume(pctx, []string{topic}, h); err != nil {
					if errors.Is(err, sarama.ErrClosedConsumerGroup) {
						return
					}
					m.fail(err)
					select {
					case <-pctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
		return m
	}
}

type saramaHandler struct {
	id   int
	recs chan<- consumed
}

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.recs <- consumed{member: h.id, partition: msg.Partition, offset: msg.Offset}
			sess.MarkMessage(msg, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}
