package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func TestErrorLine(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	shards := &kadm.ShardErrors{Name: "ListGroups", AllFailed: true, Errs: []kadm.ShardError{{Err: fmt.Errorf("unable to dial: %w", refused)}}}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("listing groups: %w", shards), "listing groups: cannot reach broker 127.0.0.1:9092: connection refused"},
		{fmt.Errorf("listing topics: unable to dial: %w", refused), "listing topics: cannot reach broker 127.0.0.1:9092: connection refused"},
		{fmt.Errorf("listing topics: %w", context.DeadlineExceeded), "listing topics: no answer before --timeout"},
		{errors.Join(errors.New("--a 1 is wrong"), errors.New("--b 2 is wrong")), "--a 1 is wrong; --b 2 is wrong"},
		{kafkaErr("creating topic demo", kerr.TopicAlreadyExists, "topic already exists: topic 'demo' already exists"),
			"creating topic demo: TOPIC_ALREADY_EXISTS: Topic with this name already exists."},
		{kafkaErr("creating topic demo", kerr.InvalidConfig, "invalid config: unknown topic config name: a"),
			"creating topic demo: INVALID_CONFIG: Configuration is invalid. (unknown topic config name: a)"},
	} {
		if got := errorLine(tt.err); got != tt.want {
			t.Errorf("errorLine(%q)\n got %q\nwant %q", tt.err, got, tt.want)
		}
	}
}

func TestParseConfigs(t *testing.T) {
	got, err := parseConfigs([]string{"a=1,b=2", "cleanup.policy=compact,delete", "c=3;d=x=y", "e="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "1", "b": "2", "cleanup.policy": "compact,delete", "c": "3", "d": "x=y", "e": ""}
	if len(got) != len(want) {
		t.Errorf("got %d configs, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] == nil || *got[k] != v {
			t.Errorf("%s: got %v, want %q", k, got[k], v)
		}
	}
	for _, bad := range [][]string{{"novalue"}, {"=1"}, {"a=1", "a=2"}} {
		if _, err := parseConfigs(bad); err == nil {
			t.Errorf("parseConfigs(%q) accepted", bad)
		}
	}
}
