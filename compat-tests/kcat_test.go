package compattests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestKcat produces with kcat (librdkafka) once per codec, consumes
// everything back with kcat, and reads the metadata kcat sees.
func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (%v); install the Debian package kcat (apt-get install kcat)", err)
	}
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	const topic = "kcat"
	createTopic(ctx, t, newAdmin(t, b), topic, 1, nil)

	runs := []struct {
		codec string // "" produces without -z
		bits  uint8
	}{{"", 0}, {"snappy", 2}, {"gzip", 1},
		// librdkafka turns lz4 on only for brokers that list
		// FindCoordinator.
		{"lz4", 3},
		{"zstd", 4}}
	var want strings.Builder
	var wantBits []uint8 // the codec of each offset
	offset := 0
	for i, run := range runs {
		name := run.codec
		if name == "" {
			name = "none"
		}
		// Values repeat themselves so that compressing them pays and
		// librdkafka keeps the compressed batch.
		var in strings.Builder
		for j := range 5 {
			key := fmt.Sprintf("%s-k%d", name, j)
			value := fmt.Sprintf("%s-v%d-%s", name, j, strings.Repeat("abcdefgh", 16))
			fmt.Fprintf(&in, "%s:%s\n", key, value)
			fmt.Fprintf(&want, "%s:%s:codec=%s,run=%d:0:%d\n", key, value, name, i, offset)
			wantBits = append(wantBits, run.bits)
			offset++
		}
		args := []string{"-P", "-b", b.Addr(), "-t", topic, "-K", ":", "-H", "codec=" + name, "-H", fmt.Sprintf("run=%d", i)}
		if run.codec != "" {
			args = append(args, "-z", run.codec)
		}
		runKcat(ctx, t, kcat, in.String(), args...)
	}

	t.Run("consume", func(t *testing.T) {
		out := runKcat(ctx, t, kcat, "", "-C", "-b", b.Addr(), "-t", topic, "-o", "beginning", "-e", "-f", `%k:%s:%h:%p:%o\n`)
		if out != want.String() {
			t.Errorf("kcat consumed:\n%s\nwant:\n%s", out, want.String())
		}
	})

	// kcat does not print codecs; franz-go says which one each batch had.
	// librdkafka silently sends uncompressed batches to a broker it
	// believes lacks a codec, judging by the ApiVersions answer.
	t.Run("compressed as asked", func(t *testing.T) {
		for _, r := range consumeKgo(ctx, t, b, topic, fromStart(1), offset) {
			if r.Offset >= int64(len(wantBits)) {
				t.Fatalf("offset %d is past the %d records kcat produced", r.Offset, len(wantBits))
			}
			if ct := r.Attrs.CompressionType(); ct != wantBits[r.Offset] {
				t.Errorf("offset %d came from a batch with compression %d, want %d", r.Offset, ct, wantBits[r.Offset])
			}
		}
	})

	t.Run("metadata", func(t *testing.T) {
		checkKcatMetadata(ctx, t, kcat, b, topic)
	})
}

// checkKcatMetadata checks the broker and topic kcat -L -J lists.
func checkKcatMetadata(ctx context.Context, t *testing.T, kcat string, b *brokerProc, topic string) {
	var md struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Leader    int32 `json:"leader"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	js := runKcat(ctx, t, kcat, "", "-L", "-b", b.Addr(), "-J")
	if err := json.Unmarshal([]byte(js), &md); err != nil {
		t.Fatalf("kcat -L -J printed something that is not JSON (%v):\n%s", err, js)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Name != b.Addr() {
		t.Fatalf("kcat -L lists brokers %+v, want the one at %s", md.Brokers, b.Addr())
	}
	found := false
	for _, mt := range md.Topics {
		if mt.Topic != topic {
			continue
		}
		found = true
		if len(mt.Partitions) != 1 || mt.Partitions[0].Partition != 0 || mt.Partitions[0].Leader != md.Brokers[0].ID {
			t.Errorf("kcat -L: topic %s has partitions %+v, want partition 0 led by %d", topic, mt.Partitions, md.Brokers[0].ID)
		}
	}
	if !found {
		t.Errorf("kcat -L does not list topic %s:\n%s", topic, js)
	}
}

// runKcat runs kcat with stdin and returns its stdout, failing the test if
// it fails or outlives its time.
func runKcat(ctx context.Context, t *testing.T, kcat, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %s: %v (context: %v)\nstderr:\n%s", strings.Join(args, " "), err, ctx.Err(), stderr.String())
	}
	return stdout.String()
}
