// Package matrix defines the client × feature compatibility matrix that the
// compatibility suite fills in, and renders it for the README.
//
// The suite (compat-tests/matrix_test.go) runs every cell that is not
// declared unsupported, records pass or fail, and compares the rendered
// table with the README's; cmd/compat-matrix runs the suite and writes the
// table into the README. Nothing in the table is written by hand: what a
// cell says is either a result of this run or a declaration below with
// its reason.
package matrix

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Client is one stock client library.
type Client struct {
	ID   string // used in test names
	Name string // shown in the table
	Via  string // where the suite gets it from
}

// Feature is one row of the matrix.
type Feature struct {
	ID    string // used in test names
	Title string
}

// Clients are the matrix's columns, in order.
var Clients = []Client{
	{"franz-go", "franz-go", "Go module github.com/twmb/franz-go (kgo, kadm)"},
	{"sarama", "sarama", "Go module github.com/IBM/sarama"},
	{"kafka-go", "kafka-go", "Go module github.com/segmentio/kafka-go"},
	{"kcat", "kcat", "Debian kcat (librdkafka)"},
	{"kafka-python", "kafka-python", "Debian python3-kafka"},
	{"confluent", "confluent-kafka", "Debian python3-confluent-kafka (librdkafka)"},
	{"kafkajs", "kafkajs", "npm kafkajs, pinned by compat-tests/js/package-lock.json"},
}

// Features are the matrix's rows, in order.
var Features = []Feature{
	{"metadata", "Bootstrap and metadata"},
	{"create-delete-topic", "Create and delete a topic"},
	{"acks-0", "Produce, acks 0"},
	{"acks-1", "Produce, acks 1"},
	{"acks-all", "Produce, acks -1 (all)"},
	{"gzip", "Produce and consume gzip"},
	{"snappy", "Produce and consume snappy"},
	{"lz4", "Produce and consume lz4"},
	{"zstd", "Produce and consume zstd"},
	{"record-fields", "Keys, headers and timestamps preserved"},
	{"from-earliest", "Consume from earliest"},
	{"from-latest", "Consume from latest"},
	{"from-timestamp", "Consume from a timestamp"},
	{"from-committed", "Consume from a committed offset, commit"},
	{"group-rebalance", "Consumer group of two, rebalance"},
	{"list-describe-groups", "List and describe groups"},
	{"idempotent", "Idempotent producer"},
	{"txn-produce", "Transactional produce, commit and abort"},
	{"read-committed", "Consume at read_committed"},
	{"leader-kill", "3-broker cluster, leader SIGKILLed mid-stream"},
}

// Cell names one client's feature.
type Cell struct {
	Client  string
	Feature string
}

// Unsupported are the cells a client cannot do at all, with the reason.
// They are not run.
var Unsupported = map[Cell]string{
	{"kcat", "create-delete-topic"}:    "kcat has no admin operations",
	{"kcat", "list-describe-groups"}:   "kcat has no group listing",
	{"kafka-go", "idempotent"}:         "kafka-go has no idempotent producer",
	{"kafka-python", "idempotent"}:     "kafka-python 2.0 has no idempotent producer",
	{"kcat", "record-fields"}:          "kcat cannot set a record's timestamp when producing, and its headers (-H) are the same for every record of a run",
	{"kafka-go", "txn-produce"}:        "kafka-go has no transactional producer",
	{"kafka-python", "txn-produce"}:    "kafka-python 2.0 has no transactional producer",
	{"kafka-go", "read-committed"}:     "kafka-go's Reader sends IsolationLevel ReadCommitted but keeps the records of aborted transactions (it ignores the fetch's aborted transactions) and hands out transaction markers as messages (kafka-go issue 1332)",
	{"kafka-python", "read-committed"}: "kafka-python 2.0 always fetches at read_uncommitted (it has no isolation_level setting)",
}

// KnownGaps are cells that run but are known to fail, with the reason. A
// known gap that passes fails the suite, so the list stays true.
var KnownGaps = map[Cell]string{}

// Status is a cell's outcome.
type Status int

const (
	NotRun Status = iota
	Pass
	Fail
	NotSupported
	KnownGap
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Fail:
		return "FAIL"
	case NotSupported:
		return "n/s"
	case KnownGap:
		return "gap"
	}
	return "not run"
}

// Results maps every cell to its outcome.
type Results map[Cell]Status

// Complete reports whether every cell of the matrix has an outcome.
func (r Results) Complete() bool {
	for _, c := range Clients {
		for _, f := range Features {
			if r[Cell{c.ID, f.ID}] == NotRun {
				return false
			}
		}
	}
	return true
}

// Render writes the matrix as a Markdown table followed by the notes of
// every unsupported cell and known gap.
func Render(r Results) string {
	var b strings.Builder
	b.WriteString("| Feature |")
	for _, c := range Clients {
		fmt.Fprintf(&b, " %s |", c.Name)
	}
	b.WriteString("\n|---|")
	for range Clients {
		b.WriteString(":---:|")
	}
	b.WriteString("\n")
	type note struct {
		mark, text string
	}
	var notes []note
	for _, f := range Features {
		fmt.Fprintf(&b, "| %s |", f.Title)
		for _, c := range Clients {
			cell := Cell{c.ID, f.ID}
			s := r[cell]
			text := s.String()
			switch s {
			case Pass:
				text = "✅"
			case Fail:
				text = "❌"
			case NotSupported, KnownGap:
				mark := fmt.Sprintf("%d", len(notes)+1)
				reason := Unsupported[cell]
				if s == KnownGap {
					reason = KnownGaps[cell]
					text = "⚠️ gap [" + mark + "]"
				} else {
					text = "n/s [" + mark + "]"
				}
				notes = append(notes, note{mark, fmt.Sprintf("%s, %s: %s", c.Name, strings.ToLower(f.Title[:1])+f.Title[1:], reason)})
			}
			fmt.Fprintf(&b, " %s |", text)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n✅ passed in the suite · ❌ failed · n/s not supported by the client · ⚠️ known gap\n")
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "%s. %s\n", n.mark, n.text)
		}
	}
	return b.String()
}

// Markers delimit the generated table in the README.
const (
	BeginMarker = "<!-- compat-matrix:begin (generated by go run ./cmd/compat-matrix; do not edit) -->"
	EndMarker   = "<!-- compat-matrix:end -->"
)

// ErrNoMarkers is returned when the README has no place for the table.
var ErrNoMarkers = errors.New("README has no compat-matrix markers")

// Section returns what stands between the markers of readme.
func Section(readme []byte) (string, error) {
	i := bytes.Index(readme, []byte(BeginMarker))
	j := bytes.Index(readme, []byte(EndMarker))
	if i < 0 || j < i {
		return "", ErrNoMarkers
	}
	return strings.TrimPrefix(string(readme[i+len(BeginMarker):j]), "\n"), nil
}

// Splice returns readme with table between its markers.
func Splice(readme []byte, table string) ([]byte, error) {
	i := bytes.Index(readme, []byte(BeginMarker))
	j := bytes.Index(readme, []byte(EndMarker))
	if i < 0 || j < i {
		return nil, ErrNoMarkers
	}
	var out bytes.Buffer
	out.Write(readme[:i+len(BeginMarker)])
	out.WriteString("\n")
	out.WriteString(table)
	out.Write(readme[j:])
	return out.Bytes(), nil
}

// Failures lists the failed cells, sorted, for messages.
func (r Results) Failures() []Cell {
	var out []Cell
	for c, s := range r {
		if s == Fail {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Client != out[j].Client {
			return out[i].Client < out[j].Client
		}
		return out[i].Feature < out[j].Feature
	})
	return out
}
