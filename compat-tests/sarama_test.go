package compattests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/pubg1/pubg1/internal/ktest"
)

// TestSarama produces and consumes with sarama at a recent protocol version
// and at Kafka 0.11's, the oldest with record batches, so that old request
// versions are served too; and manages topics with its ClusterAdmin.
func TestSarama(t *testing.T) {
	b := startBroker(t)
	versions := []sarama.KafkaVersion{sarama.V3_6_0_0, sarama.V0_11_0_0}
	codecs := []struct {
		name  string
		codec sarama.CompressionCodec
		bits  uint8
	}{
		{"none", sarama.CompressionNone, 0},
		{"gzip", sarama.CompressionGZIP, 1},
		{"snappy", sarama.CompressionSnappy, 2},
		{"lz4", sarama.CompressionLZ4, 3},
		{"zstd", sarama.CompressionZSTD, 4},
	}
	seed := uint64(100)
	for _, version := range versions {
		t.Run(version.String(), func(t *testing.T) {
			for _, c := range codecs {
				if c.codec == sarama.CompressionZSTD && !version.IsAtLeast(sarama.V2_1_0_0) {
					continue // zstd came with Produce v7 (Kafka 2.1)
				}
				seed++
				t.Run(c.name, func(t *testing.T) {
					ctx := testContext(t, time.Minute)
					topic := fmt.Sprintf("sarama-%s-%s", strings.ReplaceAll(version.String(), ".", "_"), c.name)
					const partitions = 3
					cfg := saramaConfig(version)
					saramaCreateTopic(t, b, cfg, topic, partitions)

					recs := makeRecords(seed, 300, partitions, time.Now().Add(-time.Hour))
					cfg.Producer.Compression = c.codec
					saramaProduce(t, b, cfg, topic, recs)
					got := saramaConsume(ctx, t, b, cfg, topic, partitions, len(recs))
					checkRoundTrip(t, recs, got)

					// sarama does not say which codec a batch had;
					// franz-go does.
					for _, r := range consumeKgo(ctx, t, b, topic, fromStart(partitions), len(recs)) {
						if ct := r.Attrs.CompressionType(); ct != c.bits {
							t.Fatalf("record at %d/%d came from a batch with compression %d, want %d (%s)", r.Partition, r.Offset, ct, c.bits, c.name)
						}
					}
				})
			}
			t.Run("admin", func(t *testing.T) {
				saramaAdmin(t, b, saramaConfig(version), "sarama-admin-"+strings.ReplaceAll(version.String(), ".", "_"))
			})
		})
	}
}

// saramaConfig is an idempotent, acks=all producer and a consumer at version.
func saramaConfig(version sarama.KafkaVersion) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "pubg1-compat"
	cfg.Version = version
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1 // sarama's requirement for idempotence
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.Return.Errors = true
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	return cfg
}

func newClusterAdmin(t *testing.T, b *brokerProc, cfg *sarama.Config) sarama.ClusterAdmin {
	t.Helper()
	admin, err := sarama.NewClusterAdmin([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("sarama cluster admin: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Close(); err != nil {
			t.Errorf("closing sarama cluster admin: %v", err)
		}
	})
	return admin
}

func saramaCreateTopic(t *testing.T, b *brokerProc, cfg *sarama.Config, topic string, partitions int32) {
	t.Helper()
	admin := newClusterAdmin(t, b, cfg)
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("sarama CreateTopic %s: %v", topic, err)
	}
}

// saramaProduce sends recs with one SyncProducer call and records the
// offsets they were acknowledged with.
func saramaProduce(t *testing.T, b *brokerProc, cfg *sarama.Config, topic string, recs []testRecord) {
	t.Helper()
	producer, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("sarama producer: %v", err)
	}
	defer func() {
		if err := producer.Close(); err != nil {
			t.Errorf("closing sarama producer: %v", err)
		}
	}()
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		m := &sarama.ProducerMessage{
			Topic:     topic,
			Partition: r.Partition,
			Key:       sarama.ByteEncoder(r.Key),
			Value:     sarama.ByteEncoder(r.Value),
			Timestamp: r.Timestamp,
		}
		for _, h := range r.Headers {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
		msgs[i] = m
	}
	if err := producer.SendMessages(msgs); err != nil {
		var perrs sarama.ProducerErrors
		if errors.As(err, &perrs) && len(perrs) > 0 {
			t.Fatalf("sarama produce: %d messages failed, first: %v", len(perrs), perrs[0].Err)
		}
		t.Fatalf("sarama produce: %v", err)
	}
	for i, m := range msgs {
		if m.Partition != recs[i].Partition {
			t.Fatalf("record %d for partition %d was acknowledged on partition %d", i, recs[i].Partition, m.Partition)
		}
		recs[i].Offset = m.Offset
	}
}

// saramaConsume reads every partition from the oldest offset until n
// records arrived in all.
func saramaConsume(ctx context.Context, t *testing.T, b *brokerProc, cfg *sarama.Config, topic string, partitions int32, n int) []gotRecord {
	t.Helper()
	consumer, err := sarama.NewConsumer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("sarama consumer: %v", err)
	}
	defer func() {
		if err := consumer.Close(); err != nil {
			t.Errorf("closing sarama consumer: %v", err)
		}
	}()
	msgs := make(chan *sarama.ConsumerMessage)
	errs := make(chan *sarama.ConsumerError)
	// Deferred calls run last first: stop forwarding, then close the
	// partition consumers (which drains their channels and so ends the
	// forwarders), then the consumer.
	stop := make(chan struct{})
	for p := range partitions {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("sarama ConsumePartition %s/%d: %v", topic, p, err)
		}
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				select {
				case msgs <- m:
				case <-stop:
				}
			}
		}()
		go func() {
			for e := range pc.Errors() {
				select {
				case errs <- e:
				case <-stop:
				}
			}
		}()
	}
	defer close(stop)
	var got []gotRecord
	for len(got) < n {
		select {
		case m := <-msgs:
			g := gotRecord{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Timestamp: m.Timestamp}
			for _, h := range m.Headers {
				g.Headers = append(g.Headers, header{Key: string(h.Key), Value: h.Value})
			}
			got = append(got, g)
		case e := <-errs:
			t.Fatalf("sarama consume %s/%d: %v", e.Topic, e.Partition, e.Err)
		case <-ctx.Done():
			t.Fatalf("sarama consume %s: got %d of %d records before %v", topic, len(got), n, ctx.Err())
		}
	}
	return got
}

// saramaAdmin creates, lists and deletes a topic through ClusterAdmin.
func saramaAdmin(t *testing.T, b *brokerProc, cfg *sarama.Config, topic string) {
	admin := newClusterAdmin(t, b, cfg)
	const partitions = 2
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("CreateTopic %s: %v", topic, err)
	}
	err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
	if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		t.Errorf("creating %s again: %v, want %v", topic, err, sarama.ErrTopicAlreadyExists)
	}
	topics, err := admin.ListTopics()
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	d, ok := topics[topic]
	if !ok {
		t.Fatalf("ListTopics does not list %s: %v", topic, topics)
	}
	if d.NumPartitions != partitions || d.ReplicationFactor != 1 {
		t.Errorf("ListTopics: %s has %d partitions and replication factor %d, want %d and 1", topic, d.NumPartitions, d.ReplicationFactor, partitions)
	}
	if err := admin.DeleteTopic(topic); err != nil {
		t.Fatalf("DeleteTopic %s: %v", topic, err)
	}
	// Kafka deletes asynchronously; wait, bounded, for the topic to go.
	if !ktest.Until(testContext(t, 10*time.Second), pollEvery, func() bool {
		topics, err := admin.ListTopics()
		if err != nil {
			t.Fatalf("ListTopics after delete: %v", err)
		}
		_, ok := topics[topic]
		return !ok
	}) {
		t.Fatalf("ListTopics still lists %s 10s after DeleteTopic", topic)
	}
}
