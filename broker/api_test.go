package broker_test

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// registeredAPIs is every API the broker registers, with the version range
// it handles. Update it when an API is added.
var registeredAPIs = []kmsg.ApiVersionsResponseApiKey{
	{ApiKey: 0, MinVersion: 0, MaxVersion: 13}, // Produce
	{ApiKey: 1, MinVersion: 4, MaxVersion: 18}, // Fetch
	{ApiKey: 2, MinVersion: 0, MaxVersion: 11}, // ListOffsets
	{ApiKey: 3, MinVersion: 0, MaxVersion: 13}, // Metadata
	{ApiKey: 8, MinVersion: 0, MaxVersion: 9},  // OffsetCommit
	{ApiKey: 9, MinVersion: 0, MaxVersion: 9},  // OffsetFetch
	{ApiKey: 10, MinVersion: 0, MaxVersion: 6}, // FindCoordinator
	{ApiKey: 11, MinVersion: 0, MaxVersion: 9}, // JoinGroup
	{ApiKey: 12, MinVersion: 0, MaxVersion: 4}, // Heartbeat
	{ApiKey: 13, MinVersion: 0, MaxVersion: 5}, // LeaveGroup
	{ApiKey: 14, MinVersion: 0, MaxVersion: 5}, // SyncGroup
	{ApiKey: 15, MinVersion: 0, MaxVersion: 6}, // DescribeGroups
	{ApiKey: 16, MinVersion: 0, MaxVersion: 5}, // ListGroups
	{ApiKey: 18, MinVersion: 0, MaxVersion: 4}, // ApiVersions
	{ApiKey: 19, MinVersion: 0, MaxVersion: 7}, // CreateTopics
	{ApiKey: 20, MinVersion: 0, MaxVersion: 6}, // DeleteTopics
	{ApiKey: 21, MinVersion: 0, MaxVersion: 2}, // DeleteRecords
	{ApiKey: 22, MinVersion: 0, MaxVersion: 5}, // InitProducerId
	{ApiKey: 23, MinVersion: 0, MaxVersion: 4}, // OffsetForLeaderEpoch
	{ApiKey: 24, MinVersion: 0, MaxVersion: 5}, // AddPartitionsToTxn
	{ApiKey: 25, MinVersion: 0, MaxVersion: 4}, // AddOffsetsToTxn
	{ApiKey: 26, MinVersion: 0, MaxVersion: 5}, // EndTxn
	{ApiKey: 27, MinVersion: 0, MaxVersion: 1}, // WriteTxnMarkers
	{ApiKey: 28, MinVersion: 0, MaxVersion: 5}, // TxnOffsetCommit
	{ApiKey: 32, MinVersion: 0, MaxVersion: 4}, // DescribeConfigs
	{ApiKey: 33, MinVersion: 0, MaxVersion: 2}, // AlterConfigs
	{ApiKey: 37, MinVersion: 0, MaxVersion: 3}, // CreatePartitions
	{ApiKey: 42, MinVersion: 0, MaxVersion: 3}, // DeleteGroups
	{ApiKey: 43, MinVersion: 0, MaxVersion: 2}, // ElectLeaders
	{ApiKey: 44, MinVersion: 0, MaxVersion: 1}, // IncrementalAlterConfigs
	{ApiKey: 47, MinVersion: 0, MaxVersion: 0}, // OffsetDelete
	{ApiKey: 60, MinVersion: 0, MaxVersion: 2}, // DescribeCluster
	{ApiKey: 61, MinVersion: 0, MaxVersion: 0}, // DescribeProducers
	{ApiKey: 65, MinVersion: 0, MaxVersion: 0}, // DescribeTransactions
	{ApiKey: 66, MinVersion: 0, MaxVersion: 2}, // ListTransactions
}

type apiRange struct{ key, min, max int16 }

func ranges(keys []kmsg.ApiVersionsResponseApiKey) []apiRange {
	out := make([]apiRange, 0, len(keys))
	for _, k := range keys {
		out = append(out, apiRange{k.ApiKey, k.MinVersion, k.MaxVersion})
	}
	return out
}

func TestApiVersions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	want := ranges(registeredAPIs)

	for v := int16(0); v <= 4; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			req := kmsg.NewPtrApiVersionsRequest()
			req.Version = v
			req.ClientSoftwareName, req.ClientSoftwareVersion = "pubg1-test", "1.0.0"
			resp := c.Do(req).(*kmsg.ApiVersionsResponse)
			if resp.ErrorCode != 0 {
				t.Fatalf("error %d", resp.ErrorCode)
			}
			if got := ranges(resp.ApiKeys); !slices.Equal(got, want) {
				t.Fatalf("api keys\n got %v\nwant %v", got, want)
			}
		})
	}

	for v := int16(3); v <= 4; v++ {
		t.Run("v"+strconv.Itoa(int(v))+"/bad software name", func(t *testing.T) {
			req := kmsg.NewPtrApiVersionsRequest()
			req.Version = v
			req.ClientSoftwareName, req.ClientSoftwareVersion = "bad name!", "1.0.0"
			resp := c.Do(req).(*kmsg.ApiVersionsResponse)
			if resp.ErrorCode != kerr.InvalidRequest.Code {
				t.Fatalf("error %d, want INVALID_REQUEST", resp.ErrorCode)
			}
		})
	}

	// A version above the broker's maximum is answered in v0 with
	// UNSUPPORTED_VERSION and the ApiVersions range, so that the client can
	// retry with a version the broker knows (KIP-511).
	for _, v := range []int16{5, 127} {
		t.Run("v"+strconv.Itoa(int(v))+"/unsupported", func(t *testing.T) {
			req := kmsg.NewPtrApiVersionsRequest()
			req.Version = v
			req.ClientSoftwareName, req.ClientSoftwareVersion = "pubg1-test", "1.0.0"
			corr := c.Send(req)
			resp := kmsg.NewPtrApiVersionsResponse()
			resp.Version = 0
			if got := c.Recv(resp); got != corr {
				t.Fatalf("correlation id %d, want %d", got, corr)
			}
			if resp.ErrorCode != kerr.UnsupportedVersion.Code {
				t.Fatalf("error %d, want UNSUPPORTED_VERSION", resp.ErrorCode)
			}
			if !slices.Contains(ranges(resp.ApiKeys), apiRange{18, 0, 4}) {
				t.Fatalf("api keys %v lack ApiVersions 0-4", ranges(resp.ApiKeys))
			}
			// The connection stays usable.
			again := kmsg.NewPtrApiVersionsRequest()
			again.Version = 0
			if r := c.Do(again).(*kmsg.ApiVersionsResponse); r.ErrorCode != 0 || len(r.ApiKeys) != len(want) {
				t.Fatalf("follow-up v0: error %d, %d keys", r.ErrorCode, len(r.ApiKeys))
			}
		})
	}
}

func TestMetadataTopicSelection(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	a, bb := uniqueTopic(t, "a"), uniqueTopic(t, "b")
	createTopic(t, c, a, 1)
	createTopic(t, c, bb, 2)
	all := []string{a, bb}

	tests := []struct {
		name    string
		version int16
		topics  []kmsg.MetadataRequestTopic
		want    []string
	}{
		{"v0 empty list means all", 0, []kmsg.MetadataRequestTopic{}, all},
		{"v1 null means all", 1, nil, all},
		{"v1 empty list means none", 1, []kmsg.MetadataRequestTopic{}, nil},
		{"v9 null means all", 9, nil, all},
		{"v9 empty list means none", 9, []kmsg.MetadataRequestTopic{}, nil},
		{"v12 null means all", 12, nil, all},
		{"v13 empty list means none", 13, []kmsg.MetadataRequestTopic{}, nil},
		{"v4 one topic", 4, []kmsg.MetadataRequestTopic{{Topic: ptr(bb)}}, []string{bb}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := kmsg.NewPtrMetadataRequest()
			req.Version = tt.version
			req.Topics = tt.topics
			resp := c.Do(req).(*kmsg.MetadataResponse)
			got := topicNames(resp)
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("topics %q, want %q", got, tt.want)
			}
			for _, mt := range resp.Topics {
				if mt.ErrorCode != 0 {
					t.Fatalf("topic %s: error %d", deref(mt.Topic), mt.ErrorCode)
				}
				if isInternal(mt) {
					continue
				}
				wantParts := 1
				if *mt.Topic == bb {
					wantParts = 2
				}
				if len(mt.Partitions) != wantParts {
					t.Fatalf("topic %s: %d partitions, want %d", *mt.Topic, len(mt.Partitions), wantParts)
				}
			}
		})
	}
}

func TestMetadataAutoCreate(t *testing.T) {
	const nodeID = 7
	b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) {
		c.NodeID = nodeID
		c.DefaultPartitions = 3
	}))
	c := dial(t, b)

	for _, v := range []int16{4, 9, 12} {
		t.Run("v"+strconv.Itoa(int(v))+"/allowed", func(t *testing.T) {
			name := uniqueTopic(t, "")
			req := kmsg.NewPtrMetadataRequest()
			req.Version = v
			req.AllowAutoTopicCreation = true
			req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
			resp := c.Do(req).(*kmsg.MetadataResponse)
			if len(resp.Topics) != 1 {
				t.Fatalf("%d topics", len(resp.Topics))
			}
			mt := resp.Topics[0]
			if mt.ErrorCode != 0 || deref(mt.Topic) != name {
				t.Fatalf("topic %s error %d", deref(mt.Topic), mt.ErrorCode)
			}
			if v >= 10 && mt.TopicID == [16]byte{} {
				t.Fatal("zero topic ID")
			}
			if len(mt.Partitions) != 3 {
				t.Fatalf("%d partitions, want the default 3", len(mt.Partitions))
			}
			for i, p := range mt.Partitions {
				if p.Partition != int32(i) || p.ErrorCode != 0 || p.Leader != nodeID {
					t.Fatalf("partition %d: %+v", i, p)
				}
				if v >= 7 && p.LeaderEpoch != 0 {
					t.Fatalf("partition %d: leader epoch %d, want 0", i, p.LeaderEpoch)
				}
				if !slices.Equal(p.Replicas, []int32{nodeID}) || !slices.Equal(p.ISR, []int32{nodeID}) {
					t.Fatalf("partition %d: replicas %v, ISR %v", i, p.Replicas, p.ISR)
				}
			}
			// It exists now: a later request without auto-creation sees it.
			if got := metadataFor(t, c, false, name); got.Topics[0].ErrorCode != 0 || len(got.Topics[0].Partitions) != 3 {
				t.Fatalf("after auto-creation: error %d, %d partitions", got.Topics[0].ErrorCode, len(got.Topics[0].Partitions))
			}
		})
	}

	t.Run("v4/not allowed", func(t *testing.T) {
		name := uniqueTopic(t, "")
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 4
		req.AllowAutoTopicCreation = false
		req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
		resp := c.Do(req).(*kmsg.MetadataResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("topics %+v, want UNKNOWN_TOPIC_OR_PARTITION", resp.Topics)
		}
		if slices.Contains(topicNames(metadataFor(t, c, false)), name) {
			t.Fatal("topic was created")
		}
	})

	t.Run("v1/implicitly allowed", func(t *testing.T) {
		name := uniqueTopic(t, "")
		req := kmsg.NewPtrMetadataRequest()
		req.Version = 1
		req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
		resp := c.Do(req).(*kmsg.MetadataResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) != 3 {
			t.Fatalf("topics %+v", resp.Topics)
		}
	})

	for _, bad := range []string{"bad/name", "..", ".", strings.Repeat("x", 250), "has space"} {
		for _, allow := range []bool{true, false} {
			t.Run("invalid name "+strconv.Quote(bad[:min(len(bad), 12)])+" allow="+strconv.FormatBool(allow), func(t *testing.T) {
				resp := metadataFor(t, c, allow, bad)
				if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.InvalidTopicException.Code {
					t.Fatalf("topics %+v, want INVALID_TOPIC_EXCEPTION", resp.Topics)
				}
			})
		}
	}
}

func TestMetadataTopicIDs(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	id := createTopic(t, c, name, 2)

	for v := int16(10); v <= 13; v++ {
		t.Run("v"+strconv.Itoa(int(v))+"/by name", func(t *testing.T) {
			req := kmsg.NewPtrMetadataRequest()
			req.Version = v
			req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
			resp := c.Do(req).(*kmsg.MetadataResponse)
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || resp.Topics[0].TopicID != id {
				t.Fatalf("topics %+v, want ID %x", resp.Topics, id)
			}
		})
	}
	for v := int16(12); v <= 13; v++ {
		t.Run("v"+strconv.Itoa(int(v))+"/by ID", func(t *testing.T) {
			req := kmsg.NewPtrMetadataRequest()
			req.Version = v
			req.Topics = []kmsg.MetadataRequestTopic{{TopicID: id}}
			resp := c.Do(req).(*kmsg.MetadataResponse)
			if len(resp.Topics) != 1 {
				t.Fatalf("%d topics", len(resp.Topics))
			}
			mt := resp.Topics[0]
			if mt.ErrorCode != 0 || deref(mt.Topic) != name || mt.TopicID != id || len(mt.Partitions) != 2 {
				t.Fatalf("topic %+v", mt)
			}
		})
		t.Run("v"+strconv.Itoa(int(v))+"/unknown ID", func(t *testing.T) {
			req := kmsg.NewPtrMetadataRequest()
			req.Version = v
			req.AllowAutoTopicCreation = true
			unknown := [16]byte{1, 2, 3}
			req.Topics = []kmsg.MetadataRequestTopic{{TopicID: unknown}}
			resp := c.Do(req).(*kmsg.MetadataResponse)
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicID.Code {
				t.Fatalf("topics %+v, want UNKNOWN_TOPIC_ID", resp.Topics)
			}
		})
	}
}

func TestMetadataAuthorizedOperations(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS and
	// ALTER_CONFIGS: what Kafka reports for a topic without an authorizer.
	const allTopicOps = 1<<3 | 1<<4 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10 | 1<<11
	for v := int16(8); v <= 13; v++ {
		for _, include := range []bool{false, true} {
			req := kmsg.NewPtrMetadataRequest()
			req.Version = v
			req.IncludeTopicAuthorizedOperations = include
			req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
			resp := c.Do(req).(*kmsg.MetadataResponse)
			want := int32(math.MinInt32)
			if include {
				want = allTopicOps
			}
			if got := resp.Topics[0].AuthorizedOperations; got != want {
				t.Fatalf("v%d include=%v: authorized operations %#x, want %#x", v, include, got, want)
			}
		}
	}
}

func TestMetadataAutoCreateDisabled(t *testing.T) {
	b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) { c.AutoCreateTopics = false }))
	c := dial(t, b)
	name := uniqueTopic(t, "")
	for _, v := range []int16{0, 1, 3, 4, 8, 12} {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = v
		req.AllowAutoTopicCreation = true
		req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
		resp := c.Do(req).(*kmsg.MetadataResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("v%d: topics %+v, want UNKNOWN_TOPIC_OR_PARTITION", v, resp.Topics)
		}
	}
	if names := topicNames(metadataFor(t, c, false)); len(names) != 0 {
		t.Fatalf("topics %q exist", names)
	}
	// Produce does not create topics either.
	resp := c.Do(produceReq(9, -1, name, [16]byte{}, 0, newBatch(t, "x"))).(*kmsg.ProduceResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce: error %d, want UNKNOWN_TOPIC_OR_PARTITION", code)
	}
}

// TestMetadataV1 checks the answer kafka-python 2.0.2 relies on: it bootstraps
// with Metadata v1.
func TestMetadataV1(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 2)
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 1
	req.Topics = []kmsg.MetadataRequestTopic{{Topic: ptr(name)}}
	resp := c.Do(req).(*kmsg.MetadataResponse)
	host, port := splitAddr(t, b.Addr())
	if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != 1 || resp.Brokers[0].Host != host || resp.Brokers[0].Port != port {
		t.Fatalf("brokers %+v, want node 1 at %s:%d", resp.Brokers, host, port)
	}
	if resp.ControllerID != 1 {
		t.Fatalf("controller %d, want 1", resp.ControllerID)
	}
	if len(resp.Topics) != 1 || deref(resp.Topics[0].Topic) != name || resp.Topics[0].ErrorCode != 0 || resp.Topics[0].IsInternal {
		t.Fatalf("topics %+v", resp.Topics)
	}
	for i, p := range resp.Topics[0].Partitions {
		if p.Partition != int32(i) || p.Leader != 1 || !slices.Equal(p.Replicas, []int32{1}) || !slices.Equal(p.ISR, []int32{1}) {
			t.Fatalf("partition %d: %+v", i, p)
		}
	}
}

func splitAddr(t testing.TB, addr string) (string, int32) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	port, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	return addr[:i], int32(port)
}

func TestDescribeCluster(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	md := metadataFor(t, c, false)
	if md.ClusterID == nil || *md.ClusterID == "" {
		t.Fatal("metadata has no cluster ID")
	}
	host, port := splitAddr(t, b.Addr())
	for v := int16(0); v <= 2; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			req := kmsg.NewPtrDescribeClusterRequest()
			req.Version = v
			resp := c.Do(req).(*kmsg.DescribeClusterResponse)
			if resp.ErrorCode != 0 {
				t.Fatalf("error %d (%s)", resp.ErrorCode, deref(resp.ErrorMessage))
			}
			if resp.ClusterID != *md.ClusterID {
				t.Fatalf("cluster ID %q, metadata says %q", resp.ClusterID, *md.ClusterID)
			}
			if resp.ControllerID != 1 {
				t.Fatalf("controller %d", resp.ControllerID)
			}
			if len(resp.Brokers) != 1 || resp.Brokers[0].NodeID != 1 || resp.Brokers[0].Host != host || resp.Brokers[0].Port != port || resp.Brokers[0].IsFenced {
				t.Fatalf("brokers %+v", resp.Brokers)
			}
			if v >= 1 && resp.EndpointType != 1 {
				t.Fatalf("endpoint type %d", resp.EndpointType)
			}
		})
	}
}

// TestClusterIDSurvivesRestart checks that the cluster ID is stored.
func TestClusterIDSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b1 := runBroker(t, brokertest.WithDataDir(dir))
	first := *metadataFor(t, dial(t, b1), false).ClusterID
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := runBroker(t, brokertest.WithDataDir(dir))
	if second := *metadataFor(t, dial(t, b2), false).ClusterID; second != first {
		t.Fatalf("cluster ID %q after restart, was %q", second, first)
	}
}

// TestSupportedAPIs checks that the table pubg1 version --verbose prints is
// the one a broker answers ApiVersions with.
func TestSupportedAPIs(t *testing.T) {
	if got, want := ranges(broker.SupportedAPIs()), ranges(registeredAPIs); !slices.Equal(got, want) {
		t.Fatalf("SupportedAPIs\n got %v\nwant %v", got, want)
	}
}
