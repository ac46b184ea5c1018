"""``calibr copilot simulate|propose``: registered in cli.build_parser by add_copilot_commands."""

from __future__ import annotations

import json
import os


def _print_human(result: dict) -> None:
    print(result["answer"])
    for sql in result["sql"]:
        print(f"SQL executed: {sql}")
    if result.get("rule"):
        print("Rule (saved DISABLED):" if result["rule"].get("id") else "Rule (simulated, not saved):")
        print(json.dumps({k: v for k, v in result["rule"].items() if k != "id"}, indent=2, sort_keys=True))
    if result.get("preview"):
        pv = result["preview"]
        print(f"Preview{' run ' + pv['run_id'] if pv.get('run_id') else ''}: {pv['skus_affected']} of {pv['skus_in_scope']} SKUs change, "
              f"average margin {pv['average_margin_pct_before']} % -> {pv['average_margin_pct_after']} % "
              f"(delta {pv['margin_delta_pct_points']} points), guardrail hits: {pv['guardrail_hits'] or 'none'}")
        for change in pv["price_changes"][:10]:
            print(f"  {change['sku']}: {change['from']} -> {change['to']} ({change['change_pct']} %)")
    if result.get("handoff"):
        print("Next steps (a person reviews and enables; the copilot never does):")
        for key, command in result["handoff"].items():
            print(f"  {key}: {command}")
    print(f"audit id {result['audit_id']}")


def cmd_copilot(args) -> int:
    from calibr_pipeline.cli import _print_json, _warehouse_url
    from calibr_pipeline.copilot.service import run_copilot

    result = run_copilot(_warehouse_url(args), command=args.copilot_command, project_slug=args.project, prompt=args.prompt, actor=args.actor, entry_point="cli")
    if args.json:
        _print_json(result)
    else:
        _print_human(result)
    return {"ok": 0, "refused": 3}.get(result["status"], 1)


def add_copilot_commands(sub) -> None:
    copilot = sub.add_parser("copilot", help="plain-language questions (simulate) and rule proposals (propose), read-only and audited").add_subparsers(
        dest="copilot_command", required=True)
    for name, help_text in (("simulate", "answer a question with read-only SQL or a rule preview that is not saved"),
                            ("propose", "turn a request into a rule saved DISABLED plus a preview run; prints the handoff")):
        p = copilot.add_parser(name, help=help_text)
        p.add_argument("--project", required=True)
        p.add_argument("--prompt", required=True)
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--actor", default=os.environ.get("USER", "cli"))
        p.set_defaults(func=cmd_copilot)
