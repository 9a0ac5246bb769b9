package main

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestJSONToYAML(t *testing.T) {
	got, err := jsonToYAML([]byte(`{"name":"t","count":3,"configs":{"retention.ms":"3600000","flag":"true"},"list":[1,2],"empty":[],"none":null}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `name: t
count: 3
configs:
  retention.ms: "3600000"
  flag: "true"
list:
  - 1
  - 2
empty: []
none: null
`
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatRecord(t *testing.T) {
	r := &kgo.Record{
		Topic: "t", Partition: 2, Offset: 7, Key: []byte("k"), Value: []byte("v"),
		Timestamp: time.UnixMilli(1700000000123),
		Headers:   []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("x=y")}},
	}
	for format, want := range map[string]string{
		"%k=%v\n":         "k=v\n",
		"%T/%p@%o %t":     "t/2@7 1700000000123",
		"[%h] 100%% %x %": "[a=1,b=x=y] 100% %x %",
		"no placeholders": "no placeholders",
	} {
		if got := formatRecord(format, r); got != want {
			t.Errorf("%q: got %q, want %q", format, got, want)
		}
	}
}

func TestStartOffset(t *testing.T) {
	for _, ok := range []string{"beginning", "end", "0", "42", "@1700000000000"} {
		if _, err := startOffset(ok); err != nil {
			t.Errorf("--from %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "start", "-1", "@", "@x", "1.5"} {
		if _, err := startOffset(bad); err == nil {
			t.Errorf("--from %q accepted", bad)
		}
	}
}
