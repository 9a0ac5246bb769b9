package broker_test

import (
	"archive/tar"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testdata/single-broker-5af9b45.tar.gz is the data directory of a single
// broker of release 5af9b45, which kept its topics in store records of its
// own: topic "orders" (3 partitions, retention.ms=86400000, the 300
// records "orders-0-0" to "orders-2-99" spread over them by key), topic "profiles" (cleanup.policy=compact, 10
// records), group "fixture-group" with committed offsets 10, 20 and 30 on
// orders, and producer IDs reserved up to 1000.
const (
	legacyFixture   = "testdata/single-broker-5af9b45.tar.gz"
	legacyClusterID = "9JYvjTdmfmgfJd53Z7gtVQ"
	legacyOrdersID  = "yFhsTE/cSw2apXrF/SfGEQ=="
)

// TestLegacyDataDirectory opens a data directory written by an earlier
// release and finds its topics, configs, records, committed offsets and
// producer ID reservation, at the first start and at the next.
func TestLegacyDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	untarGz(t, legacyFixture, filepath.Dir(dir))
	for start := 1; start <= 2; start++ {
		t.Run(fmt.Sprintf("start%d", start), func(t *testing.T) {
			b := runBroker(t, brokertest.WithDataDir(dir))
			checkLegacyContents(t, b)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// The earlier release's records are gone once converted.
	store, err := storage.OpenBadger(storage.BadgerOptions{Dir: dir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var left []string
	if err := store.Range([]byte("topic/"), func(k, _ []byte) bool { left = append(left, string(k)); return true }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cluster/id", "cluster/next-producer-id"} {
		if _, err := store.Get([]byte(k)); !errors.Is(err, storage.ErrNotFound) {
			left = append(left, k)
		}
	}
	if len(left) > 0 {
		t.Errorf("records of the earlier release left after conversion: %v", left)
	}
}

func checkLegacyContents(t *testing.T, b *broker.Broker) {
	t.Helper()
	ctx := testContext(t)
	cl := newClient(t, b)
	adm := kadm.NewClient(cl)

	md, err := adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if md.Cluster != legacyClusterID {
		t.Errorf("cluster ID %q, want %q", md.Cluster, legacyClusterID)
	}
	orders, ok := md.Topics["orders"]
	if !ok || len(orders.Partitions) != 3 {
		t.Fatalf("topic orders: %+v", orders)
	}
	if got := base64.StdEncoding.EncodeToString(orders.ID[:]); got != legacyOrdersID {
		t.Errorf("orders topic ID %s, want %s", got, legacyOrdersID)
	}
	for _, p := range orders.Partitions {
		if p.Leader != broker.DefaultConfig().NodeID || p.Err != nil {
			t.Errorf("orders-%d: leader %d, error %v", p.Partition, p.Leader, p.Err)
		}
	}
	if p, ok := md.Topics["profiles"]; !ok || len(p.Partitions) != 1 {
		t.Errorf("topic profiles: %+v", p)
	}

	cfgs, err := adm.DescribeTopicConfigs(ctx, "orders", "profiles")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{"orders": {"retention.ms", "86400000"}, "profiles": {"cleanup.policy", "compact"}}
	for _, rc := range cfgs {
		w := want[rc.Name]
		found := false
		for _, c := range rc.Configs {
			if c.Key == w[0] {
				found = true
				if c.MaybeValue() != w[1] || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
					t.Errorf("%s %s = %q (source %v), want %q set on the topic", rc.Name, c.Key, c.MaybeValue(), c.Source, w[1])
				}
			}
		}
		if !found {
			t.Errorf("%s: no %s", rc.Name, w[0])
		}
	}

	committed, err := adm.FetchOffsets(ctx, "fixture-group")
	if err != nil {
		t.Fatal(err)
	}
	for p, at := range map[int32]int64{0: 10, 1: 20, 2: 30} {
		o, ok := committed.Lookup("orders", p)
		if !ok || o.Err != nil || o.At != at {
			t.Errorf("fixture-group orders-%d: committed %+v (found %v), want %d", p, o, ok, at)
		}
	}

	consumer := newClient(t, b, kgo.ConsumeTopics("orders", "profiles"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := make(map[string]bool)
	next := make(map[int32]int64) // per partition, the offset expected next
	var profiles int
	for len(got) < 300 || profiles < 10 {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 300 orders and %d of 10 profiles records", len(got), profiles)
		}
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == "profiles" {
				profiles++
				return
			}
			if r.Offset != next[r.Partition] {
				t.Errorf("orders-%d: offset %d after %d", r.Partition, r.Offset, next[r.Partition]-1)
			}
			next[r.Partition] = r.Offset + 1
			if got[string(r.Value)] {
				t.Errorf("orders-%d offset %d: %q seen before", r.Partition, r.Offset, r.Value)
			}
			got[string(r.Value)] = true
		})
	}

	for p := range 3 {
		for i := range 100 {
			if v := fmt.Sprintf("orders-%d-%d", p, i); !got[v] {
				t.Errorf("orders: %q missing", v)
			}
		}
	}

	// The earlier release reserved producer IDs below 1000.
	pid := newClient(t, b)
	resp, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(ctx, pid)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ErrorCode != 0 || resp.ProducerID < 1000 {
		t.Errorf("InitProducerId: error %d, producer ID %d, want one not below 1000", resp.ErrorCode, resp.ProducerID)
	}
}

// untarGz unpacks a .tar.gz archive into dir.
func untarGz(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(path, 0o755)
		case tar.TypeReg:
			var out *os.File
			if out, err = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777); err == nil {
				_, err = io.Copy(out, tr)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
