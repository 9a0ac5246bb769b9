package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

type topicAlterConfigCmd struct {
	adminFlags `embed:""`
	Topics     []string `arg:"" help:"Topics to alter."`
	Set        []string `sep:"none" placeholder:"KEY=VALUE[,KEY=VALUE...]" help:"Configs to set; repeatable, several separated by commas as with topic create -c."`
	ConfigFile string   `name:"config-file" type:"existingfile" placeholder:"FILE" help:"Configs to set from a properties file, as with topic create --config-file."`
	Delete     []string `placeholder:"KEY" help:"Configs to remove, going back to the cluster's default; repeatable or comma-separated."`
}

// Run sends one IncrementalAlterConfigs request: only the named configs
// change, the others keep their values.
func (c *topicAlterConfigCmd) Run() error {
	set, err := parseConfigs(c.Set)
	if err != nil {
		return fmt.Errorf("--set: %w", err)
	}
	if err := addConfigFile(set, c.ConfigFile); err != nil {
		return err
	}
	var alters []kadm.AlterConfig
	for k, v := range set {
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: v})
	}
	for _, k := range c.Delete {
		k = strings.TrimSpace(k)
		if _, both := set[k]; both {
			return fmt.Errorf("%s is both set and deleted", k)
		}
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}
	if len(alters) == 0 {
		return fmt.Errorf("nothing to alter: give --set KEY=VALUE or --delete KEY")
	}
	sort.Slice(alters, func(i, j int) bool { return alters[i].Name < alters[j].Name })
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.AlterTopicConfigs(ctx, alters, c.Topics...)
	if err != nil {
		return fmt.Errorf("altering topic configs: %w", err)
	}
	var names []string
	for _, a := range alters {
		names = append(names, a.Name)
	}
	sort.Slice(resps, func(i, j int) bool { return resps[i].Name < resps[j].Name })
	failed := false
	for _, r := range resps {
		failed = topicOutcome(r.Name, r.Err, r.ErrMessage, fmt.Sprintf("altered topic %s: %s", r.Name, strings.Join(names, ", "))) || failed
	}
	if failed {
		return errFailed
	}
	return nil
}

type topicAddPartitionsCmd struct {
	adminFlags `embed:""`
	Topics     []string `arg:"" help:"Topics to grow."`
	To         int      `required:"" placeholder:"N" help:"Number of partitions each topic has afterwards; only growing is possible."`
}

func (c *topicAddPartitionsCmd) Run() error {
	if c.To < 1 {
		return fmt.Errorf("--to %d: a topic has at least one partition", c.To)
	}
	ctx, adm, done, err := c.admin()
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.UpdatePartitions(ctx, c.To, c.Topics...)
	if err != nil {
		return fmt.Errorf("adding partitions: %w", err)
	}
	failed := false
	for _, r := range resps.Sorted() {
		failed = topicOutcome(r.Topic, r.Err, r.ErrMessage, fmt.Sprintf("topic %s now has %d partitions", r.Topic, c.To)) || failed
	}
	if failed {
		return errFailed
	}
	return nil
}
