package broker_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// createTopicsReq builds a CreateTopics request at version v.
func createTopicsReq(v int16, topics ...kmsg.CreateTopicsRequestTopic) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = v
	req.TimeoutMillis = 10000
	req.Topics = topics
	return req
}

func newTopic(name string, partitions int32, rf int16, configs ...string) kmsg.CreateTopicsRequestTopic {
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, rf
	for i := 0; i+1 < len(configs); i += 2 {
		c := kmsg.NewCreateTopicsRequestTopicConfig()
		c.Name, c.Value = configs[i], ptr(configs[i+1])
		rt.Configs = append(rt.Configs, c)
	}
	return rt
}

// partitionCount returns a topic's partition count from Metadata, or -1 if
// the topic does not exist.
func partitionCount(t testing.TB, c *ktest.Conn, name string) int {
	t.Helper()
	resp := metadataFor(t, c, false, name)
	if resp.Topics[0].ErrorCode == kerr.UnknownTopicOrPartition.Code {
		return -1
	}
	if resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata for %s: error %d", name, resp.Topics[0].ErrorCode)
	}
	return len(resp.Topics[0].Partitions)
}

func TestCreateTopicsVersions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for v := int16(0); v <= 7; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			name := uniqueTopic(t, "")
			resp := c.Do(createTopicsReq(v, newTopic(name, 3, 1, "retention.ms", "12345"))).(*kmsg.CreateTopicsResponse)
			if len(resp.Topics) != 1 {
				t.Fatalf("%d topics", len(resp.Topics))
			}
			st := resp.Topics[0]
			if st.Topic != name || st.ErrorCode != 0 {
				t.Fatalf("topic %q error %d (%s)", st.Topic, st.ErrorCode, deref(st.ErrorMessage))
			}
			if v >= 5 {
				if st.NumPartitions != 3 || st.ReplicationFactor != 1 {
					t.Fatalf("partitions %d, replication factor %d", st.NumPartitions, st.ReplicationFactor)
				}
				cfgs := make(map[string]kmsg.CreateTopicsResponseTopicConfig)
				for _, cfg := range st.Configs {
					cfgs[cfg.Name] = cfg
				}
				if rm := cfgs["retention.ms"]; deref(rm.Value) != "12345" || rm.Source != 1 {
					t.Fatalf("retention.ms %s source %d, want 12345 from DYNAMIC_TOPIC_CONFIG", deref(rm.Value), rm.Source)
				}
				if cp := cfgs["cleanup.policy"]; deref(cp.Value) != "delete" || cp.Source != 5 {
					t.Fatalf("cleanup.policy %s source %d, want delete from DEFAULT_CONFIG", deref(cp.Value), cp.Source)
				}
				if mm := cfgs["max.message.bytes"]; deref(mm.Value) != "1048588" {
					t.Fatalf("max.message.bytes %s", deref(mm.Value))
				}
			}
			if v >= 7 && st.TopicID == [16]byte{} {
				t.Fatal("zero topic ID")
			}
			if n := partitionCount(t, c, name); n != 3 {
				t.Fatalf("metadata shows %d partitions", n)
			}
		})
	}
}

func TestCreateTopicsErrors(t *testing.T) {
	b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) { c.DefaultPartitions = 2 }))
	c := dial(t, b)
	existing := uniqueTopic(t, "existing")
	createTopic(t, c, existing, 1)

	assign := func(rt kmsg.CreateTopicsRequestTopic, replicas ...[]int32) kmsg.CreateTopicsRequestTopic {
		for i, r := range replicas {
			a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			a.Partition, a.Replicas = int32(i), r
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		}
		return rt
	}

	tests := []struct {
		name     string
		topic    func(name string) kmsg.CreateTopicsRequestTopic
		want     int16
		created  int // partitions expected afterwards; -1: none
		validate bool
	}{
		{"already exists", func(string) kmsg.CreateTopicsRequestTopic { return newTopic(existing, 1, 1) }, kerr.TopicAlreadyExists.Code, 1, false},
		{"zero partitions", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 0, 1) }, kerr.InvalidPartitions.Code, -1, false},
		{"negative partitions", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, -5, 1) }, kerr.InvalidPartitions.Code, -1, false},
		{"replication factor 3", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 1, 3) }, kerr.InvalidReplicationFactor.Code, -1, false},
		{"replication factor 0", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 1, 0) }, kerr.InvalidReplicationFactor.Code, -1, false},
		{"unknown config", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 1, 1, "no.such.config", "1") }, kerr.InvalidConfig.Code, -1, false},
		{"retention.ms=abc", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 1, 1, "retention.ms", "abc") }, kerr.InvalidConfig.Code, -1, false},
		{"message.timestamp.type=Foo", func(n string) kmsg.CreateTopicsRequestTopic {
			return newTopic(n, 1, 1, "message.timestamp.type", "Foo")
		}, kerr.InvalidConfig.Code, -1, false},
		{"cleanup.policy=bogus", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 1, 1, "cleanup.policy", "bogus") }, kerr.InvalidConfig.Code, -1, false},
		{"invalid name", func(string) kmsg.CreateTopicsRequestTopic { return newTopic("bad/name", 1, 1) }, kerr.InvalidTopicException.Code, -1, false},
		{"name too long", func(string) kmsg.CreateTopicsRequestTopic { return newTopic(strings.Repeat("a", 250), 1, 1) }, kerr.InvalidTopicException.Code, -1, false},
		{"defaults", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, -1, -1) }, 0, 2, false},
		{"validate only", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 4, 1) }, 0, -1, true},
		{"validate only invalid", func(n string) kmsg.CreateTopicsRequestTopic { return newTopic(n, 0, 1) }, kerr.InvalidPartitions.Code, -1, true},
		{"manual assignment", func(n string) kmsg.CreateTopicsRequestTopic {
			return assign(newTopic(n, -1, -1), []int32{1}, []int32{1}, []int32{1})
		}, 0, 3, false},
		{"assignment to unknown broker", func(n string) kmsg.CreateTopicsRequestTopic {
			return assign(newTopic(n, -1, -1), []int32{1}, []int32{5})
		}, kerr.InvalidReplicaAssignment.Code, -1, false},
		{"assignment with a partition count", func(n string) kmsg.CreateTopicsRequestTopic {
			return assign(newTopic(n, 2, -1), []int32{1}, []int32{1})
		}, kerr.InvalidRequest.Code, -1, false},
		{"assignment skipping a partition", func(n string) kmsg.CreateTopicsRequestTopic {
			rt := assign(newTopic(n, -1, -1), []int32{1}, []int32{1})
			rt.ReplicaAssignment[1].Partition = 2
			return rt
		}, kerr.InvalidReplicaAssignment.Code, -1, false},
		{"null config value", func(n string) kmsg.CreateTopicsRequestTopic {
			rt := newTopic(n, 1, 1)
			rt.Configs = []kmsg.CreateTopicsRequestTopicConfig{{Name: "retention.ms"}}
			return rt
		}, kerr.InvalidConfig.Code, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := tt.topic(uniqueTopic(t, ""))
			req := createTopicsReq(7, rt)
			req.ValidateOnly = tt.validate
			resp := c.Do(req).(*kmsg.CreateTopicsResponse)
			if len(resp.Topics) != 1 {
				t.Fatalf("%d topics", len(resp.Topics))
			}
			st := resp.Topics[0]
			if st.Topic != rt.Topic || st.ErrorCode != tt.want {
				t.Fatalf("topic %q: error %d (%s), want %d", st.Topic, st.ErrorCode, deref(st.ErrorMessage), tt.want)
			}
			if tt.want != 0 {
				if st.ErrorMessage == nil {
					t.Error("no error message")
				}
				if st.NumPartitions != -1 || st.ReplicationFactor != -1 {
					t.Errorf("failed creation reports %d partitions, replication factor %d; want -1, -1", st.NumPartitions, st.ReplicationFactor)
				}
			}
			if tt.want == 0 && !tt.validate && st.NumPartitions != int32(tt.created) {
				t.Errorf("response reports %d partitions, want %d", st.NumPartitions, tt.created)
			}
			if tt.validate && tt.want == 0 && st.NumPartitions != 4 {
				t.Errorf("validate-only response reports %d partitions, want 4", st.NumPartitions)
			}
			if len(rt.Topic) <= 249 && !strings.Contains(rt.Topic, "/") {
				if n := partitionCount(t, c, rt.Topic); n != tt.created {
					t.Fatalf("topic has %d partitions afterwards, want %d", n, tt.created)
				}
			}
		})
	}

	t.Run("duplicate in one request", func(t *testing.T) {
		name := uniqueTopic(t, "")
		resp := c.Do(createTopicsReq(7, newTopic(name, 1, 1), newTopic(name, 2, 1))).(*kmsg.CreateTopicsResponse)
		if len(resp.Topics) != 2 {
			t.Fatalf("%d topics", len(resp.Topics))
		}
		for i, st := range resp.Topics {
			if st.Topic != name || st.ErrorCode != kerr.InvalidRequest.Code {
				t.Fatalf("entry %d: topic %q error %d, want INVALID_REQUEST", i, st.Topic, st.ErrorCode)
			}
		}
		if n := partitionCount(t, c, name); n != -1 {
			t.Fatalf("topic exists with %d partitions", n)
		}
	})

	t.Run("mixed request", func(t *testing.T) {
		good, bad := uniqueTopic(t, "good"), uniqueTopic(t, "bad")
		resp := c.Do(createTopicsReq(4, newTopic(good, 1, 1), newTopic(bad, 0, 1))).(*kmsg.CreateTopicsResponse)
		codes := []int16{resp.Topics[0].ErrorCode, resp.Topics[1].ErrorCode}
		if !slices.Equal(codes, []int16{0, kerr.InvalidPartitions.Code}) {
			t.Fatalf("errors %v", codes)
		}
		if partitionCount(t, c, good) != 1 || partitionCount(t, c, bad) != -1 {
			t.Fatal("wrong topics created")
		}
	})
}

func deleteTopicsReq(v int16, names ...string) *kmsg.DeleteTopicsRequest {
	req := kmsg.NewPtrDeleteTopicsRequest()
	req.Version = v
	req.TimeoutMillis = 10000
	if v < 6 {
		req.TopicNames = names
	} else {
		for _, n := range names {
			req.Topics = append(req.Topics, kmsg.DeleteTopicsRequestTopic{Topic: ptr(n)})
		}
	}
	return req
}

func TestDeleteTopics(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	for v := int16(0); v <= 6; v++ {
		t.Run("v"+strconv.Itoa(int(v))+"/by name", func(t *testing.T) {
			name := uniqueTopic(t, "")
			id := createTopic(t, c, name, 2)
			resp := c.Do(deleteTopicsReq(v, name)).(*kmsg.DeleteTopicsResponse)
			if len(resp.Topics) != 1 || deref(resp.Topics[0].Topic) != name || resp.Topics[0].ErrorCode != 0 {
				t.Fatalf("topics %+v", resp.Topics)
			}
			if v >= 6 && resp.Topics[0].TopicID != id {
				t.Fatalf("topic ID %x, want %x", resp.Topics[0].TopicID, id)
			}
			if n := partitionCount(t, c, name); n != -1 {
				t.Fatalf("topic still has %d partitions", n)
			}
		})
		t.Run("v"+strconv.Itoa(int(v))+"/unknown name", func(t *testing.T) {
			resp := c.Do(deleteTopicsReq(v, uniqueTopic(t, ""))).(*kmsg.DeleteTopicsResponse)
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("topics %+v, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics)
			}
		})
	}

	t.Run("v6/by ID", func(t *testing.T) {
		name := uniqueTopic(t, "")
		id := createTopic(t, c, name, 1)
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.Version = 6
		req.Topics = []kmsg.DeleteTopicsRequestTopic{{TopicID: id}}
		resp := c.Do(req).(*kmsg.DeleteTopicsResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || deref(resp.Topics[0].Topic) != name || resp.Topics[0].TopicID != id {
			t.Fatalf("topics %+v", resp.Topics)
		}
		if n := partitionCount(t, c, name); n != -1 {
			t.Fatalf("topic still has %d partitions", n)
		}
		// Name and ID together are refused.
		other := uniqueTopic(t, "other")
		otherID := createTopic(t, c, other, 1)
		both := kmsg.NewPtrDeleteTopicsRequest()
		both.Version = 6
		both.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: ptr(other), TopicID: otherID}}
		if r := c.Do(both).(*kmsg.DeleteTopicsResponse); len(r.Topics) != 1 || r.Topics[0].ErrorCode != kerr.InvalidRequest.Code {
			t.Fatalf("name and ID: %+v, want INVALID_REQUEST", r.Topics)
		}
		if partitionCount(t, c, other) != 1 {
			t.Fatal("topic deleted by a refused request")
		}
		// Deleting the same ID again: it is gone.
		resp = c.Do(req).(*kmsg.DeleteTopicsResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicID.Code {
			t.Fatalf("second delete: %+v, want UNKNOWN_TOPIC_ID", resp.Topics)
		}
	})
}

func TestDeletedTopicIsGone(t *testing.T) {
	b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) { c.AutoCreateTopics = false }))
	c := dial(t, b)
	name := uniqueTopic(t, "")
	id := createTopic(t, c, name, 1)
	for range 3 {
		produce(t, c, name, 0, newBatch(t, "a", "b"))
	}
	if resp := c.Do(deleteTopicsReq(6, name)).(*kmsg.DeleteTopicsResponse); resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("delete: error %d", resp.Topics[0].ErrorCode)
	}

	presp := c.Do(produceReq(9, -1, name, [16]byte{}, 0, newBatch(t, "x"))).(*kmsg.ProduceResponse)
	if code := presp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce after delete: error %d, want UNKNOWN_TOPIC_OR_PARTITION", code)
	}
	presp = c.Do(produceReq(13, -1, "", id, 0, newBatch(t, "x"))).(*kmsg.ProduceResponse)
	if code := presp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicID.Code {
		t.Fatalf("produce v13 by old ID after delete: error %d, want UNKNOWN_TOPIC_ID", code)
	}
	if fp := fetchOne(t, c, name, 0, 0); fp.ErrorCode != kerr.UnknownTopicOrPartition.Code || len(fp.RecordBatches) != 0 {
		t.Fatalf("fetch after delete: error %d, %d bytes", fp.ErrorCode, len(fp.RecordBatches))
	}
	if lo := listOffset(t, c, name, 0, -1); lo.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("list offsets after delete: error %d", lo.ErrorCode)
	}

	id2 := createTopic(t, c, name, 1)
	if id2 == id {
		t.Fatal("re-created topic has the old ID")
	}
	if lo := listOffset(t, c, name, 0, -1); lo.ErrorCode != 0 || lo.Offset != 0 {
		t.Fatalf("re-created topic: end offset %d error %d, want 0", lo.Offset, lo.ErrorCode)
	}
	if fp := fetchOne(t, c, name, 0, 0); fp.ErrorCode != 0 || fp.HighWatermark != 0 || len(fp.RecordBatches) != 0 {
		t.Fatalf("re-created topic: fetch error %d, hwm %d, %d bytes", fp.ErrorCode, fp.HighWatermark, len(fp.RecordBatches))
	}
	if off := produce(t, c, name, 0, newBatch(t, "new")); off != 0 {
		t.Fatalf("first produce to re-created topic at offset %d, want 0", off)
	}
	fresp := c.Do(fetchReq(13, "", id, 0, 0)).(*kmsg.FetchResponse)
	if code := fresp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicID.Code {
		t.Fatalf("fetch by the old ID: error %d, want UNKNOWN_TOPIC_ID", code)
	}
}

// TestDeleteTopicSurvivesRestart checks that deletion and re-creation are
// durable.
func TestDeleteTopicSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b1 := runBroker(t, brokertest.WithDataDir(dir))
	c1 := dial(t, b1)
	gone, kept := uniqueTopic(t, "gone"), uniqueTopic(t, "kept")
	createTopic(t, c1, gone, 1)
	keptID := createTopic(t, c1, kept, 2)
	produce(t, c1, kept, 1, newBatch(t, "a", "b", "c"))
	if resp := c1.Do(deleteTopicsReq(5, gone)).(*kmsg.DeleteTopicsResponse); resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("delete: error %d", resp.Topics[0].ErrorCode)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := runBroker(t, brokertest.WithDataDir(dir), brokertest.WithConfig(func(c *broker.Config) { c.AutoCreateTopics = false }))
	c2 := dial(t, b2)
	md := metadataFor(t, c2, false)
	if names := topicNames(md); !slices.Equal(names, []string{kept}) {
		t.Fatalf("topics after restart %q, want only %q", names, kept)
	}
	if md.Topics[0].TopicID != keptID || len(md.Topics[0].Partitions) != 2 {
		t.Fatalf("kept topic after restart: ID %x, %d partitions", md.Topics[0].TopicID, len(md.Topics[0].Partitions))
	}
	if lo := listOffset(t, c2, kept, 1, -1); lo.Offset != 3 {
		t.Fatalf("end offset after restart %d, want 3", lo.Offset)
	}
}

func TestCreatePartitions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	adm := kadm.NewClient(newClient(t, b))
	ctx := testContext(t)

	t.Run("grow", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1)
		produce(t, c, name, 0, newBatch(t, "p0"))
		resps, err := adm.UpdatePartitions(ctx, 3, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := resps[name]; r.Err != nil {
			t.Fatalf("update partitions: %v (%s)", r.Err, r.ErrMessage)
		}
		if n := partitionCount(t, c, name); n != 3 {
			t.Fatalf("%d partitions, want 3", n)
		}
		if off := produce(t, c, name, 2, newBatch(t, "p2a", "p2b")); off != 0 {
			t.Fatalf("first offset of new partition %d", off)
		}
		if off := produce(t, c, name, 2, newBatch(t, "p2c")); off != 2 {
			t.Fatalf("second batch of new partition at %d, want 2", off)
		}
		if lo := listOffset(t, c, name, 0, -1); lo.Offset != 1 {
			t.Fatalf("partition 0 end offset %d, want 1", lo.Offset)
		}
	})

	for v := int16(0); v <= 3; v++ {
		for _, count := range []int32{1, 2} {
			t.Run("v"+strconv.Itoa(int(v))+"/to "+strconv.Itoa(int(count))+" of 2", func(t *testing.T) {
				name := uniqueTopic(t, "")
				createTopic(t, c, name, 2)
				req := kmsg.NewPtrCreatePartitionsRequest()
				req.Version = v
				req.TimeoutMillis = 10000
				req.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: name, Count: count}}
				resp := c.Do(req).(*kmsg.CreatePartitionsResponse)
				if len(resp.Topics) != 1 || resp.Topics[0].Topic != name || resp.Topics[0].ErrorCode != kerr.InvalidPartitions.Code {
					t.Fatalf("topics %+v, want INVALID_PARTITIONS", resp.Topics)
				}
				if n := partitionCount(t, c, name); n != 2 {
					t.Fatalf("%d partitions after a refused change", n)
				}
			})
		}
	}

	t.Run("unknown topic", func(t *testing.T) {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		req.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: uniqueTopic(t, ""), Count: 4}}
		resp := c.Do(req).(*kmsg.CreatePartitionsResponse)
		if resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("error %d, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics[0].ErrorCode)
		}
	})

	t.Run("validate only", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1)
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.Version = 3
		req.ValidateOnly = true
		req.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: name, Count: 5}}
		resp := c.Do(req).(*kmsg.CreatePartitionsResponse)
		if resp.Topics[0].ErrorCode != 0 {
			t.Fatalf("error %d", resp.Topics[0].ErrorCode)
		}
		if n := partitionCount(t, c, name); n != 1 {
			t.Fatalf("validate-only grew the topic to %d partitions", n)
		}
	})
}

// TestCreateTopicCollision: names that differ only by '.' versus '_' clash.
func TestCreateTopicCollision(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	createTopic(t, c, "coll.name", 1)
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "coll_name", 1, 1
	req.Topics = append(req.Topics, rt)
	resp := c.Do(req).(*kmsg.CreateTopicsResponse)
	if code := resp.Topics[0].ErrorCode; code != kerr.InvalidTopicException.Code {
		t.Fatalf("colliding name: error %d, want INVALID_TOPIC_EXCEPTION", code)
	}
}
