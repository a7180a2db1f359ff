// Command orphan launches a test plugin through the launcher, prints the
// plugin's pid and waits to be killed: the plugins tests SIGKILL it and
// check that the plugin process goes away too.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/telemetry-collector/telemetry-collector/plugins"
)

func main() {
	l := &plugins.Launcher{}
	p, err := l.Processor(context.Background(), plugins.Spec{Name: "passthrough", Command: os.Args[1]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	select {}
}
