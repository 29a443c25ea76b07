#!/usr/bin/env python3
"""Renders chat-template cases with Jinja2 exactly as Hugging Face transformers'
apply_chat_template does (transformers/utils/chat_template_utils.py, _compile_jinja_template):
an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loop controls, its own
`tojson` (json.dumps without HTML escaping, ensure_ascii=False), and `raise_exception`.

  chat_template_oracle.py CASES.json OUT.json

CASES.json: a list of {"template", "messages", "add_generation_prompt", "bos_token",
"eos_token"} (a null token is left undefined). OUT.json: one {"text"} or {"error", "raised"}
per case, in order ("raised": the error came from raise_exception). Exit 77 without jinja2.
"""
import json
import sys

try:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("chat_template_oracle.py: python3-jinja2 is not installed", file=sys.stderr)
    sys.exit(77)


class Raised(jinja2.exceptions.TemplateError):
    pass


def raise_exception(message):
    raise Raised(message)


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} block, which renders its body unchanged."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        call = self.call_method("_generation_support")
        return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    compiled = {}
    out = []
    for case in cases:
        try:
            source = case["template"]
            if source not in compiled:
                compiled[source] = env.from_string(source)
            variables = {"messages": case["messages"],
                         "add_generation_prompt": case["add_generation_prompt"]}
            for name in ("bos_token", "eos_token"):
                if case.get(name) is not None:
                    variables[name] = case[name]
            out.append({"text": compiled[source].render(**variables)})
        except Raised as e:
            out.append({"error": str(e), "raised": True})
        except Exception as e:  # any Jinja2 or Python error: ours must fail too
            out.append({"error": f"{type(e).__name__}: {e}", "raised": False})
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
