package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/template"
)

func init() {
	commands["completion"] = command{summary: "print a shell completion script: bash, zsh or fish", run: cmdCompletion,
		examples: `source <(medic completion bash)          # bash, now; add it to ~/.bashrc to keep it
medic completion zsh > "${fpath[1]}/_medic"  # zsh
medic completion fish > ~/.config/fish/completions/medic.fish`}
}

func cmdCompletion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("completion", "bash|zsh|fish", stderr)
	if err := parseArgs(fs, args, 1); err != nil {
		return err
	}
	tmpl, ok := completionScripts[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "unknown shell %q (bash, zsh or fish)\n", fs.Arg(0))
		return errUsage
	}
	return template.Must(template.New("").Parse(tmpl)).Execute(stdout, completionData(ctx))
}

type completionCommand struct {
	Name, Summary string
	Flags         []string // without dashes
}

// completionData lists the visible commands with their flags, read from
// each command's own -h output, so a new command completes with no
// extra work.
func completionData(ctx context.Context) []completionCommand {
	var out []completionCommand
	for _, n := range visibleCommands() {
		var help bytes.Buffer
		commands[n].run(ctx, []string{"-h"}, io.Discard, &help)
		var flags []string
		for _, l := range strings.Split(help.String(), "\n") {
			if f, ok := strings.CutPrefix(l, "  -"); ok && f != "" && f[0] != ' ' {
				flags = append(flags, strings.Fields(f)[0])
			}
		}
		sort.Strings(flags)
		out = append(out, completionCommand{Name: n, Summary: strings.ReplaceAll(commands[n].summary, "'", ""), Flags: flags})
	}
	return out
}

// Flags taking a file complete file names.
var completionScripts = map[string]string{
	"bash": bashCompletion,
	"zsh":  "#compdef medic\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion,
	"fish": `# fish completion for medic
complete -c medic -f
complete -c medic -n __fish_use_subcommand -s h -l help -d 'show help'
complete -c medic -n __fish_use_subcommand -s v -l version -d 'print the version'
complete -c medic -n __fish_use_subcommand -a help -d 'help about a command'
complete -c medic -n '__fish_seen_subcommand_from help' -a '{{range .}}{{.Name}} {{end}}'
{{range .}}complete -c medic -n __fish_use_subcommand -a {{.Name}} -d '{{.Summary}}'
{{$c := .Name}}{{range .Flags}}complete -c medic -n '__fish_seen_subcommand_from {{$c}}' -l {{.}}{{if or (eq . "config") (eq . "kubeconfig")}} -r -F{{end}}
{{end}}{{end}}{{range .}}{{if eq .Name "completion"}}complete -c medic -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'
{{end}}{{end}}`,
}

const bashCompletion = `# bash completion for medic
_medic() {
	local cur prev cmd opts
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "{{range .}}{{.Name}} {{end}}help --help --version" -- "$cur"))
		return
	fi
	cmd="${COMP_WORDS[1]}"
	case "$prev" in
	--config|-config|--kubeconfig|-kubeconfig)
		COMPREPLY=($(compgen -f -- "$cur"))
		return
		;;
	esac
	case "$cmd" in
	help) opts="{{range .}}{{.Name}} {{end}}" ;;
	completion) opts="bash zsh fish" ;;
{{range .}}{{if ne .Name "completion"}}	{{.Name}}) opts="{{range .Flags}}--{{.}} {{end}}--help" ;;
{{end}}{{end}}	esac
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _medic medic
`
