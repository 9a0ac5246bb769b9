package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The topic and group commands speak the Kafka protocol through franz-go's
// admin client, so they work against any Kafka-compatible cluster.

// stdout is where the admin commands print.
var stdout io.Writer = os.Stdout

// adminFlags are the flags every admin command has.
type adminFlags struct {
	Brokers string        `default:"127.0.0.1:9092" env:"PUBG1_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	Timeout time.Duration `default:"30s" help:"Upper bound for the command."`
}

// admin connects an admin client; the returned function closes it and the
// context.
func (f *adminFlags) admin() (context.Context, *kadm.Client, func(), error) {
	ctx, _, adm, done, err := f.clients()
	return ctx, adm, done, err
}

// clients is admin with the Kafka client under the admin client, for
// requests to one broker; opts are added to the client's options.
func (f *adminFlags) clients(opts ...kgo.Opt) (context.Context, *kgo.Client, *kadm.Client, func(), error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(f.Brokers, ",")...)}, opts...)...)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("connecting to %s: %w", f.Brokers, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	return ctx, cl, kadm.NewClient(cl), func() { cancel(); stop(); cl.Close() }, nil
}

// errFailed reports that some items of a command failed; each was printed.
var errFailed = errors.New("some operations failed")

// topicOutcome prints one topic's result of a change: its Kafka error, or
// the success line. It reports whether the change failed.
func topicOutcome(topic string, err error, errMessage, success string) (failed bool) {
	if err != nil {
		fmt.Fprintf(stdout, "topic %s: error: %s\n", topic, rowError(kafkaErrAbout("topic "+topic, err, errMessage)))
		return true
	}
	fmt.Fprintln(stdout, success)
	return false
}

func table() *tabwriter.Writer { return tableOn(stdout) }

func tableOn(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

type topicCmd struct {
	Create        topicCreateCmd        `cmd:"" help:"Create a topic."`
	List          topicListCmd          `cmd:"" help:"List topics."`
	Describe      topicDescribeCmd      `cmd:"" help:"Describe topics: partitions, leaders, offsets, configs."`
	Delete        topicDeleteCmd        `cmd:"" help:"Delete topics."`
	AlterConfig   topicAlterConfigCmd   `cmd:"" name:"alter-config" help:"Set or remove topic configs, leaving the others as they are."`
	AddPartitions topicAddPartitionsCmd `cmd:"" name:"add-partitions" help:"Grow topics to a number of partitions."`
	ElectLeaders  topicElectLeadersCmd  `cmd:"" name:"elect-leaders" help:"Move partition leadership to the preferred replicas, or with --unclean elect leaders of partitions that have none."`
	Produce       topicProduceCmd       `cmd:"" help:"Produce stdin's lines as records."`
	Consume       topicConsumeCmd       `cmd:"" help:"Print a topic's records."`
}

type topicCreateCmd struct {
	adminFlags        `embed:""`
	Name              string   `arg:"" help:"Topic to create."`
	Partitions        int32    `short:"p" default:"-1" help:"Number of partitions (-1: the cluster's default)."`
	ReplicationFactor int16    `name:"replication-factor" short:"r" default:"-1" help:"Replication factor (-1: the cluster's default)."`
	Config            []string `short:"c" sep:"none" placeholder:"KEY=VALUE[,KEY=VALUE...]" help:"Topic configs; repeatable, several separated by commas (-c retention.ms=3600000,cleanup.policy=compact)."`
	ConfigFile        string   `name:"config-file" type:"existingfile" placeholder:"FILE" help:"Topic configs from a properties file: KEY=VALUE a line, # comments."`
}

func (c *topicCreateCmd) Run() error {
	configs, err := parseConfigs(c.Config)
	if err != nil {
		return err
	}
	if err := addConfigFile(configs, c.ConfigFile); err != nil {
		return err
	}
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resp, err := adm.CreateTopic(ctx, c.Partitions, c.ReplicationFactor, configs, c.Name)
	if err != nil {
		return kafkaErr("creating topic "+c.Name, err, resp.ErrMessage)
	}
	fmt.Fprintf(stdout, "created topic %s with %d partitions and replication factor %d\n", resp.Topic, resp.NumPartitions, resp.ReplicationFactor)
	return nil
}

// parseConfigs reads -c values: KEY=VALUE, several in one value separated
// by commas (or by semicolons, as before). A comma followed by text without
// '=' belongs to the value, so list values such as
// cleanup.policy=compact,delete need no quoting.
func parseConfigs(values []string) (map[string]*string, error) {
	configs := make(map[string]*string)
	for _, value := range values {
		var last string
		for _, part := range strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ';' }) {
			k, v, ok := strings.Cut(part, "=")
			if !ok {
				if last == "" {
					return nil, fmt.Errorf("-c %s: %q is not KEY=VALUE", value, part)
				}
				joined := *configs[last] + "," + part
				configs[last] = &joined
				continue
			}
			k = strings.TrimSpace(k)
			if k == "" {
				return nil, fmt.Errorf("-c %s: %q has no key", value, part)
			}
			if _, dup := configs[k]; dup {
				return nil, fmt.Errorf("-c: %s given twice", k)
			}
			configs[k], last = &v, k
		}
	}
	return configs, nil
}

// addConfigFile adds the configs of a properties file (KEY=VALUE or
// KEY: VALUE a line; blank lines and lines starting with # or ! are
// skipped; a value is taken whole, commas included) to configs. A key
// given twice, in the file or also with -c, is an error.
func addConfigFile(configs map[string]*string, path string) error {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config-file: %w", err)
	}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			return fmt.Errorf("--config-file %s:%d: %q is not KEY=VALUE", path, n+1, line)
		}
		k, v := strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		if k == "" {
			return fmt.Errorf("--config-file %s:%d: %q has no key", path, n+1, line)
		}
		if _, dup := configs[k]; dup {
			return fmt.Errorf("--config-file %s:%d: %s given twice", path, n+1, k)
		}
		configs[k] = &v
	}
	return nil
}

type topicListCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
	Internal   bool `help:"Include internal topics such as __consumer_offsets."`
}

// topicListed is one row of topic list.
type topicListed struct {
	Name              string `json:"name"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal"`
	Error             string `json:"error,omitempty"`
}

func (c *topicListCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	list := adm.ListTopics
	if c.Internal {
		list = adm.ListTopicsWithInternal
	}
	topics, err := list(ctx)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	rows := []topicListed{}
	for _, t := range topics.Sorted() {
		row := topicListed{Name: t.Topic, Internal: t.IsInternal}
		if t.Err != nil {
			row.Error = rowError(t.Err)
		} else {
			row.Partitions, row.ReplicationFactor = len(t.Partitions), t.Partitions.NumReplicas()
		}
		rows = append(rows, row)
	}
	if c.structured() {
		return c.emit(rows)
	}
	w := table()
	fmt.Fprintln(w, "TOPIC\tPARTITIONS\tREPLICATION-FACTOR\tINTERNAL")
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(w, "%s\terror: %s\t\t\n", r.Name, r.Error)
			continue
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%v\n", r.Name, r.Partitions, r.ReplicationFactor, r.Internal)
	}
	return w.Flush()
}

type topicDeleteCmd struct {
	adminFlags `embed:""`
	Topics     []string `arg:"" help:"Topics to delete."`
}

func (c *topicDeleteCmd) Run() error {
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.DeleteTopics(ctx, c.Topics...)
	if err != nil {
		return fmt.Errorf("deleting topics: %w", err)
	}
	failed := false
	for _, r := range resps.Sorted() {
		failed = topicOutcome(r.Topic, r.Err, r.ErrMessage, "deleted topic "+r.Topic) || failed
	}
	if failed {
		return errFailed
	}
	return nil
}
