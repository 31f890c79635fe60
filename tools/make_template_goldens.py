#!/usr/bin/env python3
"""Writes tests/data/templates/goldens.json: what Python jinja2 renders, in the environment Hugging Face
transformers uses for chat templates, for

  * every fixture template (tests/data/templates/*.jinja) x every conversation in conversations.json, and
  * the interpreter snippets below (one per feature of the supported subset).

tests/template/template_test.cpp renders the same inputs with tern's C++ interpreter and requires the
output to be byte-identical (or to fail where jinja2 fails).

Usage (needs jinja2 3.1.x; the test data was made with 3.1.6):

    /tmp/venv/bin/python tools/make_template_goldens.py
"""

import datetime
import json
import pathlib
import random
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "templates"

# strftime_now() returns this instant; the C++ test passes the same one as RenderOptions::now (UTC).
FIXED_NOW = datetime.datetime(2026, 11, 27, 12, 0, 0, tzinfo=datetime.timezone.utc)

# Special tokens HF passes to each template (from each model's tokenizer_config.json).
TEMPLATES = {
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "llama31": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama32": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "qwen25": {"eos_token": "<|im_end|>"},
    "mistral_nemo": {"bos_token": "<s>", "eos_token": "</s>"},
    "deepseek_r1_distill_llama": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "qwen3": {"eos_token": "<|im_end|>"},
    "gemma2": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "phi35": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
}


def make_environment():
    """transformers.utils.chat_template_utils._compile_jinja_template, minus the AssistantTracker
    extension ({% generation %}), which tern does not support."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # HF replaces jinja2's tojson: no HTML escaping, insertion key order, unicode kept.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_environment()


def render(source, context):
    """{"output": text} or {"error": {"phase", "type", "message"}}."""
    try:
        template = ENV.from_string(source)
    except Exception as e:  # noqa: BLE001 - any jinja2 failure is a golden
        return {"error": {"phase": "parse", "type": type(e).__name__, "message": str(e)}}
    try:
        return {"output": template.render(**context)}
    except Exception as e:  # noqa: BLE001
        return {"error": {"phase": "render", "type": type(e).__name__, "message": str(e)}}


def conversation_context(conversation):
    """The variables apply_chat_template passes, in its order: messages, tools, documents,
    add_generation_prompt, then (per template) the special tokens, then extra kwargs."""
    context = {
        "messages": conversation["messages"],
        "tools": conversation.get("tools"),
        "documents": None,
        "add_generation_prompt": conversation["add_generation_prompt"],
    }
    context.update(conversation.get("extra", {}))
    return context


# Inline templates, one or a few features each. (name, template, context)
D = {"a": 1, "items": 5}
MSGS = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "u1"},
    {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]},
    {"role": "tool", "content": "r"},
    {"role": "user", "content": "u2"},
]
SNIPPETS = [
    # whitespace control: trim_blocks, lstrip_blocks, -, +, comments, raw, newlines
    ("ws_trim_blocks", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("ws_lstrip_blocks", "line\n    {% if true %}\n    indented\n    {% endif %}\nend", {}),
    ("ws_minus", "a  {%- if true -%}  b  {%- endif -%}  c", {}),
    ("ws_var_minus", "a \n {{- 'x' -}} \n b", {}),
    ("ws_plus", "x\n    {%+ if true %}y{% endif %}\n  {%+ if true +%}\nz{% endif %}", {}),
    ("ws_comment", "a\n  {# comment #}\nb {#- c -#} d\n{#+ keep +#}\ne", {}),
    ("ws_raw", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}", {}),
    ("ws_raw_strip", "  {%- raw -%}  x {{ y }}  {%- endraw -%}  z\n  {% raw %}\n  r\n  {% endraw %}\nw", {}),
    ("ws_trailing_newline", "abc\n", {}),
    ("ws_two_trailing_newlines", "abc\n\n", {}),
    ("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r", {}),
    ("ws_var_no_lstrip", "  {{ 'x' }}\n  {{ 'y' }}", {}),
    ("ws_lstrip_after_var", "{{ 'a' }}  {% if true %}b{% endif %}", {}),
    ("ws_unicode_space", "a\u00a0\u3000{%- if true %}b{% endif %}", {}),
    ("ws_block_end_newline_only_one", "{% if true %}\n\nx{% endif %}", {}),
    ("ws_minus_end_eats_newlines", "{% if true -%}\n\n   x\n{%- endif %}\n\ny", {}),
    ("ws_multiline_tag", "{% if\n true\n %}\nyes{% endif %}{{\n 'v'\n }}", {}),
    # literals and printing (Python str/repr)
    ("print_constants", "{{ none }}|{{ None }}|{{ true }}|{{ False }}|{{ True }}", {}),
    ("print_numbers",
     "{{ 1 }}|{{ 1.0 }}|{{ 1.5e3 }}|{{ 0.1 + 0.2 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 1e-5 }}|{{ 0.0001 }}|"
     "{{ 123456789012345678 }}|{{ 1_000 }}|{{ 0x1F }}|{{ 0b101 }}|{{ 0o17 }}|{{ 3.0 * 2 }}|{{ 1e100 }}|{{ -0.0 }}|"
     "{{ 2.5E-3 }}|{{ 1/3 }}|{{ 123456.789e3 }}", {}),
    ("print_list", "{{ [1, 'a', none, true, 2.5, [], {}, (1,)] }}", {}),
    ("print_tuple", "{{ (1,) }}|{{ (1, 'b') }}|{{ () }}|{{ 1, 2 }}", {}),
    ("print_dict", "{{ {'a': 1, 'b': [1, 2], 'c': {'d': none}, 1: 'int key'} }}", {}),
    ("print_str_repr",
     r"""{{ ['it\'s', "say \"hi\"", 'both \' and "', 'tab\there', 'nl\n', 'back\\slash', 'uni é 😀'] }}""", {}),
    ("print_repr_nonprintable", r"""{{ ['\x00\x07\x1b\x7f\x85\xa0\xad', '\u2028\u200b\u200d\ufeff', '\U0001F600 ok'] }}""", {}),
    ("string_escapes", r"""{{ 'a\tb\nc\\d\'e\"f\x41\u00e9\U0001F600\101\q' }}""", {}),
    ("string_adjacent", "{{ 'a' 'b' \"c\" }}", {}),
    ("print_context_values", "{{ v }}", {"v": {"k": [1.5, None, True, "x'y", {"n": -0.0}]}}),
    # arithmetic
    ("arith",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 6 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} "
     "{{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 1 + 2 * 3 - 4 }} {{ (1 + 2) * 3 }} "
     "{{ 10 - 2 - 3 }} {{ 2 * 0.5 }} {{ 5 % 2.5 }} {{ -5 // 2.0 }} {{ 1.5 ** 2 }} {{ -(3) }} {{ +4 }}", {}),
    ("arith_mixed", "{{ true + 1 }} {{ true * 3 }} {{ 'ab' * 3 }} {{ [1] * 2 }} {{ 3 * 'x' }} {{ 'x' * 0 }} {{ [1, 2] + [3] }} {{ (1,) + (2,) }}", {}),
    ("arith_div_zero", "{{ 1 / 0 }}", {}),
    ("arith_mod_zero", "{{ 1 % 0 }}", {}),
    ("arith_str_plus_int", "{{ 'a' + 1 }}", {}),
    ("arith_int_plus_str", "{{ 1 + 'a' }}", {}),
    ("arith_undefined", "{{ missing + 1 }}", {}),
    ("arith_list_plus_tuple", "{{ [1] + (2,) }}", {}),
    ("concat_tilde", "{{ 'a' ~ 1 ~ none ~ [1] ~ missing ~ 2.0 ~ true }}", {}),
    ("percent_format", "{{ 'n=%s' % 5 }}|{{ '%s and %s' % ('x', 'y') }}|{{ '%d%%' % 50 }}|{{ '%r' % 'q' }}", {}),
    # Python treats a list or dict right operand as a mapping: unused, it is no error.
    ("percent_mapping_like", "{{ 'abc' % [1] }}|{{ '%s' % [1, 2] }}|{{ 'x' % {} }}|[{{ '' % missing }}]", {}),
    ("percent_unused_argument_error", "{{ 'abc' % 5 }}", {}),
    # comparisons, logic, membership, conditional expressions
    ("compare",
     "{{ 1 < 2 }} {{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 != 2 }} {{ 1 < 2 < 3 }} "
     "{{ 3 > 2 > 5 }} {{ none == none }} {{ [1] == [1] }} {{ (1,) == [1] }} {{ {'a': 1} == {'a': 1} }} "
     "{{ true == 1 }} {{ 'é' > 'z' }} {{ 2 >= 2.0 }} {{ missing == none }} {{ missing != 1 }}", {}),
    ("compare_type_error", "{{ 1 < 'a' }}", {}),
    ("compare_undefined_error", "{{ missing < 1 }}", {}),
    ("logic",
     "{{ true and 'x' }}|{{ false or 'y' }}|{{ none or 0 or '' }}|{{ not none }}|{{ not 'a' }}|{{ 1 and 2 and 3 }}|"
     "{{ '' and 1 }}|{{ not 1 == 2 }}|{{ not missing }}|{{ [] or {} or 'z' }}", {}),
    ("membership",
     "{{ 'a' in 'cat' }} {{ 1 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'x' in missing }} "
     "{{ 1.0 in [1] }} {{ '' in 'abc' }} {{ (1, 2) in [(1, 2)] }} {{ 'tool_calls' in msg }}", {"msg": {"role": "user"}}),
    ("membership_type_error", "{{ 1 in 'abc' }}", {}),
    ("membership_none_error", "{{ 1 in none }}", {}),
    ("cond_expr",
     "{{ 'yes' if true else 'no' }}|{{ 'yes' if false else 'no' }}|[{{ 'only' if false }}]|"
     "{{ 'a' if false else 'b' if true else 'c' }}|{{ (1 if true else 2) + 1 }}", {}),
    # variables, attributes, items, slices, undefined
    ("undefined_print", "[{{ missing }}]", {}),
    ("undefined_attribute_error", "{{ missing.attr }}", {}),
    ("undefined_item_error", "{{ missing['k'] }}", {}),
    ("undefined_call_error", "{{ nothere() }}", {}),
    ("not_callable_error", "{{ s() }}", {"s": "abc"}),
    ("dict_missing_key", "[{{ d.nokey }}][{{ d['nokey'] }}][{{ d[3] }}]", {"d": D}),
    ("dict_missing_chain_error", "{{ d.nokey.x }}", {"d": D}),
    ("dict_missing_int_chain_error", "{{ d[3].x }}", {"d": D}),
    ("dict_method_vs_key",
     "{{ d['items'] }}|{{ d.get('a') }}|{{ d.get('zz', 'dflt') }}|[{{ d.get('zz') }}]|{{ d.items() | list }}|"
     "{{ d.keys() | list }}|{{ d.values() | list }}|{{ d.items() }}|{{ d.keys() }}|{{ d.values() }}|{{ d.items()|length }}",
     {"d": D}),
    ("list_index", "{{ x[0] }} {{ x[-1] }} [{{ x[10] }}] {{ x.0 }} [{{ x['a'] }}] {{ x.count(2) }} {{ x.index(3) }}",
     {"x": [1, 2, 3]}),
    ("list_missing_chain_error", "{{ x[10].foo }}", {"x": [1, 2, 3]}),
    ("list_missing_attr_error", "{{ x.foo() }}", {"x": [1, 2, 3]}),
    ("none_attribute", "[{{ n.foo }}][{{ n['k'] }}]", {"n": None}),
    ("none_attribute_chain_error", "{{ n.foo.bar }}", {"n": None}),
    ("slices",
     "{{ x[1:] }} {{ x[:-1] }} {{ x[::-1] }} {{ x[::2] }} {{ s[1:3] }} {{ s[::-1] }} {{ x[5:] }} {{ x[-100:2] }} "
     "{{ s[-2:] }} {{ x[:] }} {{ x[3:1:-1] }} {{ (1, 2, 3)[1:] }} {{ x[1:none] }}",
     {"x": [1, 2, 3, 4], "s": "héllo😀"}),
    ("slice_step_zero_error", "{{ x[::0] }}", {"x": [1, 2]}),
    ("string_index", "{{ s[0] }}{{ s[-1] }}{{ s|length }}[{{ s[99] }}]", {"s": "héllo😀"}),
    ("nested_access", "{{ m.a.b[1].c }}|{{ m['a']['b'][0] }}", {"m": {"a": {"b": [0, {"c": "deep"}]}}}),
    # for loops
    ("loop_variables",
     "{% for x in ['a','b','c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
     "{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.depth }}|{% endfor %}", {}),
    ("loop_prev_next", "{% for x in [1,2,3] %}[{{ loop.previtem }}-{{ loop.nextitem }}]{% endfor %}", {}),
    ("loop_cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}", {}),
    ("loop_else", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1] %}{{ x }}{% else %}empty{% endfor %}", {}),
    ("loop_filter",
     "{% for x in range(10) if x is odd %}{{ x }}:{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}", {}),
    ("loop_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("loop_unpack_items_filter", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("loop_unpack_parenthesized", "{% for (a, b) in [[1, 2], 'xy'] %}{{ a }}{{ b }}{% endfor %}", {}),
    ("loop_dict", "{% for k in d %}{{ k }}{% endfor %}", {"d": {"z": 1, "a": 2}}),
    ("loop_string", "{% for c in 'héy😀' %}[{{ c }}]{% endfor %}", {}),
    ("loop_break_continue",
     "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("loop_nested",
     "{% for a in [1,2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}", {}),
    ("loop_scope", "{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("loop_variable_does_not_leak", "{% for i in [1,2] %}{% set y = i %}{% endfor %}[{{ i }}][{{ y }}]", {}),
    ("loop_unpack_error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("loop_unpack_too_few_error", "{% for a, b in [[1]] %}{% endfor %}", {}),
    ("loop_over_none_error", "{% for x in none %}{% endfor %}", {}),
    ("loop_over_int_error", "{% for x in 5 %}{% endfor %}", {}),
    ("loop_over_undefined", "{% for x in missing %}x{% else %}none{% endfor %}", {}),
    ("loop_outer_loop_variable",
     "{% for a in [1, 2] %}{% set outer = loop %}{% for b in [1] %}{{ outer.index }}{{ loop.index }}{% endfor %}{% endfor %}", {}),
    # set, namespace, with, filter blocks
    ("set_basic", "{% set a = 1 %}{% set b, c = 2, 3 %}{{ a }}{{ b }}{{ c }}{% set a = a + 10 %}{{ a }}", {}),
    ("set_in_if", "{% if true %}{% set a = 5 %}{% endif %}{{ a }}", {}),
    ("set_shadows_context", "{% set messages = messages[1:] %}{{ messages|length }}", {"messages": [1, 2, 3]}),
    ("set_block", "{% set x %}hello {{ 'world' }}\n{% endset %}[{{ x }}]", {}),
    ("set_block_filter", "{% set x | upper | trim %}  hello  {% endset %}[{{ x }}]", {}),
    ("set_tuple", "{% set t = 1, 2 %}{{ t }}", {}),
    ("namespace",
     "{% set ns = namespace(count=0, found=false) %}{% for i in range(4) %}{% set ns.count = ns.count + i %}"
     "{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }}|{{ ns.found }}|{{ ns }}|[{{ ns.nope }}]", {}),
    ("namespace_from_dict", "{% set ns = namespace(d, b=2) %}{{ ns.a }}{{ ns.b }}", {"d": {"a": 1}}),
    ("namespace_assign_error", "{% set x = 1 %}{% set x.a = 2 %}", {}),
    ("with_block", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", {}),
    ("filter_block", "{% filter upper %}hello {{ 'x' }}{% endfilter %}|{% filter replace('a', 'o') %}banana{% endfilter %}", {}),
    ("print_tag", "{% print 'a' ~ 1 %}", {}),
    # macros
    ("macro_basic",
     "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
     "{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}", {}),
    ("macro_sees_top_level_at_call_time", "{% set z = 1 %}{% macro m() %}{{ z }}{% endmacro %}{% set z = 5 %}{{ m() }}", {}),
    ("macro_recursion",
     "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(6) }}", {}),
    ("macro_missing_argument", "{% macro m(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ m(1) }}", {}),
    ("macro_whitespace", "{% macro m(x) %}\n  <{{ x }}>\n{% endmacro %}\n{{ m(1) }}{{ m(2) }}", {}),
    ("macro_too_many_arguments_error", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}),
    ("macro_unknown_keyword_error", "{% macro m(a) %}{% endmacro %}{{ m(b=1) }}", {}),
    ("macro_default_uses_earlier_argument", "{% macro m(a, b=a * 2) %}{{ a }}{{ b }}{% endmacro %}{{ m(3) }}", {}),
    # tests
    ("tests_types",
     "{{ 1 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}{{ 1.0 is float }}{{ 'a' is string }}"
     "{{ {} is mapping }}{{ [] is sequence }}{{ 'a' is sequence }}{{ {} is sequence }}{{ 'a' is iterable }}{{ 1 is iterable }}"
     "{{ none is none }}{{ true is boolean }}{{ 1 is boolean }}{{ true is true }}{{ 1 is true }}{{ false is false }}"
     "{{ missing is defined }}{{ missing is undefined }}{{ missing is sequence }}{{ missing is iterable }}{{ d.get is callable }}"
     "{{ d is iterable }}{{ (1,) is sequence }}{{ [1]|select is iterable }}{{ [1]|select is sequence }}{{ d.items() is sequence }}",
     {"d": D}),
    ("tests_numbers", "{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}{{ 2.0 is even }}{{ -3 is odd }}", {}),
    ("tests_compare",
     "{{ 1 is eq 1 }}{{ 1 is equalto 2 }}{{ 2 is gt 1 }}{{ 1 is lt 2 }}{{ 1 is ne 1 }}{{ 2 is ge 2 }}{{ 1 is le 0 }}"
     "{{ 'a' is in 'abc' }}{{ none is sameas none }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ 'Abc' is lower }}"
     "{{ 1 is greaterthan 0 }}{{ 1 is lessthan 0 }}{{ '<b>'|e is escaped }}{{ 'x' is escaped }}", {}),
    ("tests_negated", "{{ 1 is not none }}|{{ not 1 is none }}|{{ missing is not defined }}|{{ 2 is not even }}", {}),
    ("tests_filter_and_test", "{{ 'upper' is filter }}{{ 'nope' is filter }}{{ 'odd' is test }}{{ 'nope' is test }}", {}),
    ("test_odd_undefined_error", "{{ missing is odd }}", {}),
    # filters
    ("f_length", "{{ [1,2]|length }}{{ 'héllo'|length }}{{ {'a':1}|count }}{{ missing|length }}{{ (1,2,3)|length }}", {}),
    ("f_length_error", "{{ 5|length }}", {}),
    ("f_join",
     "{{ [1, 'a', none]|join(', ') }}|{{ ['x','y']|join }}|{{ [{'n':'a'},{'n':'b'}]|join('-', attribute='n') }}|"
     "{{ 'abc'|join('.') }}|[{{ missing|join(',') }}]", {}),
    ("f_trim", "[{{ '  a b \n'|trim }}][{{ 'xxhixx'|trim('x') }}][{{ '\u3000 wide \u00a0'|trim }}][{{ missing|trim }}][{{ 5|trim }}]", {}),
    ("f_case",
     "{{ 'hello world'|upper }}|{{ 'HeLLo'|lower }}|{{ 'hello wORLD-foo(bar) x<y [z {w'|title }}|{{ 'hello WORLD'|capitalize }}|"
     "{{ \"they're bill's\"|title }}|{{ 'straße'|upper }}|{{ 'ÉCOLE ΟΔΟΣ ΣΑ'|lower }}|{{ 'ÿ µ ı'|upper }}|{{ 'İ'|lower }}|"
     "{{ 'ŉ'|upper }}|{{ 'ǅ'|length }}|{{ 123|upper }}", {}),
    ("f_default",
     "{{ missing|default('dflt') }}|{{ none|default('dflt') }}|{{ ''|default('dflt', true) }}|{{ 0|d('zero', boolean=true) }}|"
     "{{ 'v'|d('x') }}|[{{ missing|default }}]", {}),
    ("f_first_last",
     "{{ [1,2,3]|first }}{{ [1,2,3]|last }}{{ 'abc'|first }}{{ 'abc'|last }}[{{ []|first }}][{{ []|last }}]"
     "{{ {'a': 1, 'b': 2}|first }}{{ {'a': 1, 'b': 2}|last }}", {}),
    ("f_last_generator_error", "{{ [1, 2]|select('odd')|last }}", {}),
    ("f_list_string",
     "{{ 'ab'|list }}|{{ {'a':1}|list }}|{{ 12|string }}|{{ none|string }}|{{ [1]|string }}|{{ (1,2)|list }}|[{{ missing|string }}]|{{ missing|list }}", {}),
    ("f_int_float",
     "{{ '42'|int }} {{ '3.7'|int }} {{ 3.7|int }} {{ -3.7|int }} {{ 'abc'|int }} {{ 'abc'|int(-1) }} {{ ' 12 '|int }} {{ '1_000'|int }} "
     "{{ true|int }} {{ none|int }} {{ '2.5'|float }} {{ 3|float }} {{ 'x'|float }} {{ '1e3'|float }} {{ ' -inf '|float }} "
     "{{ '1e3'|int }} {{ '-0'|int }} {{ '+5'|int }} {{ [1]|int }} {{ 'nan'|float }} {{ '1_0.5'|float }}", {}),
    ("f_int_undefined_error", "{{ missing|int }}", {}),
    ("f_tojson",
     "{{ {'b': 1, 'a': [1, 2.5, none, true, 'é\"\\n<>&\\'']}|tojson }}|{{ {'b': 1, 'a': 2}|tojson(indent=2) }}|"
     "{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}|{{ [1,[2,{}],[]]|tojson(indent=4) }}|{{ 'é😀'|tojson(ensure_ascii=true) }}|"
     "{{ {'a':1, 'b': [1]}|tojson(separators=(',', ':')) }}|{{ (1,2)|tojson }}|{{ 1e16|tojson }}|{{ {'k': {'z': 1, 'a': 2}}|tojson(indent='\\t') }}|"
     "{{ [1]|tojson(indent=0) }}|{{ 'x'|tojson(true) }}|{{ {1: 'int', none: 'n', true: 'b'}|tojson }}|{{ '\\x7f'|tojson }}|{{ '\\x7f'|tojson(ensure_ascii=true) }}", {}),
    ("f_tojson_context", "{{ data|tojson }}\n{{ data|tojson(indent=2) }}",
     {"data": {"z": 1, "a": {"y": [1.0, 0.1, 1e-7, 1e22, -2.5e-5, 3], "b": None}, "s": "é\u2028\u0000\t\u001f😀/\\\"",
               "e": [], "o": {}}}),
    ("f_tojson_undefined_error", "{{ missing|tojson }}", {}),
    ("f_tojson_generator_error", "{{ [1]|select|tojson }}", {}),
    ("f_items", "{{ d|items|list }}|{% for k, v in missing|items %}x{% endfor %}|{{ d.items()|list == d|items|list }}", {"d": D}),
    ("f_items_error", "{{ [1]|items|list }}", {}),
    ("f_map",
     "{{ [{'n': 'a'}, {'n': 'b'}, {}]|map(attribute='n')|list }}|{{ [{'n': 'a'}, {}]|map(attribute='n', default='?')|list }}|"
     "{{ ['a', 'B']|map('upper')|join(',') }}|{{ [[1,2],[3]]|map('length')|list }}|{{ [1.26, 2.5]|map('round', 1)|list }}|"
     "{{ [{'a': {'b': [5, 6]}}]|map(attribute='a.b.1')|list }}", {}),
    ("f_select",
     "{{ range(10)|select('odd')|list }}|{{ range(5)|reject('even')|list }}|{{ [0, 1, '', 'a', none]|select|list }}|"
     "{{ [1, 2, 3]|select('gt', 1)|list }}|{{ ['a','b','a']|select('equalto', 'a')|list }}|{{ [1, 'a', none]|reject('string')|list }}|"
     "{{ [1, 2, 3]|select('in', [2, 3])|list }}", {}),
    ("f_selectattr",
     "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|list }}|{{ msgs|rejectattr('role', 'eq', 'user')|list|length }}|"
     "{{ msgs|selectattr('tool_calls')|list|length }}|{{ msgs|selectattr('tool_calls', 'defined')|list|length }}|"
     "{{ msgs|selectattr('role', 'in', ['system', 'tool'])|map(attribute='role')|join(',') }}|"
     "{{ msgs|selectattr('tool_calls', 'undefined')|list|length }}|{{ (msgs|selectattr('role', '==', 'user')|first).content }}",
     {"msgs": MSGS}),
    ("f_generator_semantics",
     "{% set g = [1,2,3]|select('odd') %}{{ g|list }}{{ g|list }}|{% if [] | select('odd') %}truthy{% endif %}|"
     "{% set h = [1, 2, 3]|map('string') %}{{ h|first }}{{ h|list }}|{% set u = [1]|select %}{% for x in u %}{{ x }}{% endfor %}{% for x in u %}again{% endfor %}|"
     "[{{ ([1]|select)[0] }}]", {}),
    ("f_generator_length_error", "{{ [1]|select('odd')|length }}", {}),
    ("f_unique",
     "{{ ['a', 'A', 'b', 'a']|unique|list }}|{{ ['a', 'A']|unique(case_sensitive=true)|list }}|"
     "{{ [{'n': 1}, {'n': 1}, {'n': 2}]|unique(attribute='n')|list }}|{{ [1, 1.0, true, 2]|unique|list }}", {}),
    ("f_unique_unhashable_error", "{{ [[1], [1]]|unique|list }}", {}),
    ("f_sort",
     "{{ [3, 1, 2]|sort }}|{{ ['b', 'A', 'c']|sort }}|{{ ['b', 'A', 'c']|sort(case_sensitive=true) }}|{{ [3, 1, 2]|sort(reverse=true) }}|"
     "{{ [{'n': 2, 'm': 'x'}, {'n': 1, 'm': 'y'}]|sort(attribute='n')|map(attribute='m')|join }}|"
     "{{ [{'a': 1, 'b': 2}, {'a': 1, 'b': 1}, {'a': 0, 'b': 3}]|sort(attribute='a,b')|map(attribute='b')|join }}|"
     "{{ ['b', 'a', 'B', 'A']|sort }}|{{ ['b', 'a', 'B', 'A']|sort(reverse=true) }}|{{ {'b': 1, 'a': 2}|sort }}", {}),
    ("f_sort_type_error", "{{ [1, 'a']|sort }}", {}),
    ("f_dictsort",
     "{{ {'b': 1, 'A': 2, 'c': 0}|dictsort }}|{{ {'b': 1, 'A': 2}|dictsort(true) }}|{{ {'b': 1, 'a': 2}|dictsort(by='value') }}|"
     "{{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}", {}),
    ("f_min_max_sum",
     "{{ [3, 1, 2]|min }}{{ [3, 1, 2]|max }}{{ ['b', 'A']|min }}{{ ['b', 'A']|max }}{{ [1, 2, 3]|sum }}"
     "{{ [{'v': 1.5}, {'v': 2}]|sum(attribute='v') }}{{ [1]|sum(start=10) }}[{{ []|max }}]{{ [{'k': 2}, {'k': 9}]|max(attribute='k') }}", {}),
    ("f_reverse", "{{ 'abc😀'|reverse }}|{{ [1, 2, 3]|reverse|list }}|{{ [1, 2]|reverse|join(',') }}|{{ {'a': 1, 'b': 2}|reverse|list }}", {}),
    ("f_replace",
     "{{ 'aaa'|replace('a', 'b') }}|{{ 'aaa'|replace('a', 'b', 2) }}|{{ 'abc'|replace('', '-') }}|{{ 1.5|replace('.', ',') }}|"
     "{{ 'héé'|replace('é', 'e') }}|{{ 'x'|replace('x', 1) }}", {}),
    ("f_round_abs",
     "{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ -0.4|round }} {{ 42.55|round(1, 'floor') }} {{ 42.51|round(1, 'ceil') }} "
     "{{ 3|round }} {{ -3|abs }} {{ -2.5|abs }} {{ 1.23456|round(3) }} {{ 0.5|round }} {{ 1.5|round }} {{ 1e20|round(2) }} {{ 0.125|round(2) }}", {}),
    ("f_round_floor_zero", "{{ -0.0|round(1, 'floor') }}|{{ -0.01|round(1, 'ceil') }}|{{ -0.0|round }}", {}),
    ("f_select_falsy", "{{ none|select|list }}{{ 0|map('string')|list }}{{ ''|reject|list }}{{ none|selectattr('x')|list }}", {}),
    ("f_unique_undefined", "{{ [missing, missing, 1]|unique|list }}", {}),
    ("f_indent",
     "{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb'|indent(2, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}|{{ 'x\n'|indent('> ') }}|"
     "{{ 'x\r\ny'|indent(1) }}|{{ ''|indent(2, true) }}", {}),
    ("f_safe_escape",
     "{{ '<b>'|safe }}|{{ '<a href=\"x\">&\\'' |e }}|{{ ('<i>'|safe) + '<b>' }}|{{ '<i>' + ('<b>'|safe) }}|{{ '<i>'|e|e }}|"
     "{{ ('<x>'|e) ~ '<y>' }}|{{ '<x>'|escape|length }}|{{ '<x>'|forceescape }}", {}),
    ("f_format",
     "{{ '%s-%d-%r'|format('a', 3, 'b') }}|{{ '%05.1f|%-4s|%x|%4d|%.2s'|format(3.14159, 'ab', 255, 7, 'xyz') }}|{{ '%s'|format([1]) }}|"
     "{{ '%.1s|%3s|%+d|%.3f'|format('éa', 'é', 5, 2.0005) }}", {}),
    ("f_center_batch", "[{{ 'ab'|center(5) }}]|[{{ 'ab'|center(6) }}]|{{ [1,2,3,4,5]|batch(2)|list }}|{{ [1,2,3]|batch(2, 0)|list }}", {}),
    # str methods
    ("m_strip",
     "[{{ '  a  '.strip() }}][{{ 'xxaxx'.strip('x') }}][{{ '  a  '.lstrip() }}][{{ '  a  '.rstrip() }}][{{ '\n\ta\n'.strip() }}]"
     "[{{ 'abcba'.strip('ab') }}][{{ '\u00a0a\u2003'.strip() }}][{{ 'ééaé'.lstrip('é') }}][{{ 'xa'.strip(none) }}]", {}),
    ("m_split",
     "{{ 'a,b,,c'.split(',') }}|{{ '  a  b c '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|"
     "{{ '  a  b c '.split(none, 1) }}|{{ '  a  b c '.rsplit(none, 1) }}|{{ ''.split() }}|{{ ''.split(',') }}|"
     "{{ 'x</think>y'.split('</think>')[-1] }}|{{ 'a\nb\r\nc\x0bd\u2028e\n'.splitlines() }}|{{ 'a\nb\n'.splitlines(true) }}|"
     "{{ 'a  b'.split(' ') }}|{{ 'aXbXc'.split('X', maxsplit=1) }}|{{ 'a b'.split(sep=none) }}|{{ 'a b c'.split(none, 0) }}", {}),
    ("m_split_empty_separator_error", "{{ 'abc'.split('') }}", {}),
    ("m_affix",
     "{{ 'hello'.startswith('he') }}{{ 'hello'.endswith('lo') }}{{ 'hello'.startswith(('x', 'h')) }}{{ 'hello'.startswith('l', 2) }}"
     "{{ 'hello'.removeprefix('he') }}{{ 'hello'.removesuffix('lo') }}{{ 'hello'.endswith('l', 0, 3) }}{{ 'héllo'.startswith('é', 1) }}", {}),
    ("m_find_replace",
     "{{ 'héllo'.find('l') }}{{ 'hello'.rfind('l') }}{{ 'hello'.find('z') }}{{ 'hello'.count('l') }}{{ 'a-b-c'.replace('-', '+') }}"
     "{{ 'a-b-c'.replace('-', '', 1) }}{{ ', '.join(['a', 'b']) }}{{ 'hello'.index('e') }}{{ ''.join('abc') }}{{ 'aaa'.count('') }}", {}),
    ("m_join_type_error", "{{ ','.join([1, 2]) }}", {}),
    ("m_index_error", "{{ 'abc'.index('z') }}", {}),
    ("m_case",
     "{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}{{ \"hello wORLD they're 1st\".title() }}{{ 'hELLO wORLD'.capitalize() }}"
     "{{ 'Hello'.swapcase() }}{{ 'abc'.isalpha() }}{{ '123'.isdigit() }}{{ ' '.isspace() }}{{ 'abc'.islower() }}"
     "{{ 'ABC'.isupper() }}{{ ''.isdigit() }}{{ 'a1'.isalnum() }}{{ 'ß'.title() }}{{ 'ßa'.capitalize() }}{{ '1a'.islower() }}", {}),
    ("m_format",
     "{{ '{} and {}'.format('a', 'b') }}|{{ '{1}{0}'.format('a', 'b') }}|{{ '{name}!'.format(name='x') }}|"
     "{{ '{{literal}} {}'.format(1) }}|{{ '{!r}'.format('q') }}|{{ '{}'.format(none) }}", {}),
    ("m_pad", "[{{ 'ab'.center(6, '*') }}][{{ 'ab'.ljust(4) }}][{{ 'ab'.rjust(4, '-') }}][{{ 'é'.center(4) }}]", {}),
    ("m_unsafe_list_append_error", "{% set l = [1] %}{{ l.append(2) }}", {}),
    ("m_unsafe_dict_update_error", "{{ d.update({'x': 1}) }}", {"d": D}),
    ("m_unsafe_attribute_prints_empty", "[{{ [1].append }}][{{ d.pop }}]", {"d": D}),
    ("m_dunder_unsafe", "[{{ d.__class__ }}]", {"d": D}),
    # globals
    ("g_range", "{{ range(3)|list }}{{ range(1, 7, 2)|list }}{{ range(3, 0, -1)|list }}{{ range(0)|list }}{{ range(-2)|list }}", {}),
    ("g_range_too_big_error", "{{ range(200000)|length }}", {}),
    ("g_raise_exception", "before{{ raise_exception('custom failure: ' ~ 42) }}", {}),
    ("g_strftime_now", "{{ strftime_now('%Y-%m-%d %H:%M:%S|%d %b %Y|%B %A %a %j|%-d') }}|{{ strftime_now is defined }}", {}),
    ("g_dict", "{{ dict(a=1, b=2) }}|{{ dict(d, z=0) }}", {"d": {"a": 1}}),
    ("g_context_overrides_global", "{{ range }}", {"range": "mine"}),
    ("g_other_globals_defined", "{{ lipsum is defined }}{{ cycler is defined }}{{ joiner is defined }}{{ nope is defined }}", {}),
    # syntax errors (jinja2 rejects these at parse time)
    ("syntax_unclosed_if", "{% if true %}x", {}),
    ("syntax_unclosed_for", "{% for x in y %}{% if x %}{% endif %}", {}),
    ("syntax_stray_end", "{% endfor %}", {}),
    ("syntax_mismatched_end", "{% for x in y %}{% endif %}", {}),
    ("syntax_bad_expression", "{{ 1 + }}", {}),
    ("syntax_unclosed_variable", "{{ x ", {}),
    ("syntax_unclosed_comment", "{# x", {}),
    ("syntax_unknown_tag", "{% frobnicate %}", {}),
    ("syntax_unknown_filter", "{{ x|nosuchfilter }}", {}),
    ("syntax_unknown_test", "{{ x is nosuchtest }}", {}),
    ("syntax_break_outside_loop", "{% break %}", {}),
    ("syntax_unbalanced_brackets", "{{ (1 + 2 }}", {}),
    ("syntax_chained_is", "{{ 1 is odd is odd }}", {}),
    ("syntax_unterminated_string", "{{ 'abc }}", {}),
]


# Content drawn on by the seeded random conversations: unicode, whitespace, quotes, and text that looks
# like template syntax (which must come out verbatim, never be evaluated).
RANDOM_TEXTS = [
    "Hi", "  leading and trailing  ", "multi\nline\n\ntext", "tab\there", "emoji 🤖👍🏽 and CJK 漢字",
    "quotes ' \" and \\ backslash", "{{ not a tag }} {% if %} {# nor this #}", "</think> early close",
    "<think>hidden</think>visible", "", "   ", "ẞ straße ΟΔΟΣ", "<b>html & entities</b>", "\u00a0nbsp\u2028sep",
]


def random_conversations(count, seed):
    """Seeded conversations mixing roles, contents and tool calls, for breadth beyond the hand-written ones."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": rng.choice(RANDOM_TEXTS)})
        for turn in range(rng.randint(1, 4)):
            messages.append({"role": "user", "content": rng.choice(RANDOM_TEXTS)})
            if rng.random() < 0.25:
                arguments = {"q": rng.choice(RANDOM_TEXTS), "n": rng.choice([0, 1.5, -2, None, True])}
                messages.append({"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call{index:02d}{turn:03d}", "type": "function",
                     "function": {"name": "lookup", "arguments": arguments}}]})
                messages.append({"role": "tool", "tool_call_id": f"call{index:02d}{turn:03d}",
                                 "content": rng.choice(RANDOM_TEXTS)})
            elif rng.random() < 0.8:
                messages.append({"role": "assistant", "content": rng.choice(RANDOM_TEXTS)})
        conversation = {"name": f"random_{index:02d}", "messages": messages,
                        "add_generation_prompt": rng.random() < 0.6}
        if rng.random() < 0.4:
            conversation["tools"] = [{"type": "function", "function": {
                "name": "lookup", "description": rng.choice(RANDOM_TEXTS),
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "number"}}}}}]
        out.append(conversation)
    return out


def main():
    conversations = json.loads((DATA / "conversations.json").read_text(encoding="utf-8"))
    conversations += random_conversations(count=16, seed=2026)
    names = [c["name"] for c in conversations]
    if len(set(names)) != len(names):
        sys.exit("conversation names must be unique")

    goldens = {
        "generator": "tools/make_template_goldens.py",
        "jinja2_version": jinja2.__version__,
        "now_epoch_seconds": int(FIXED_NOW.timestamp()),
        "templates": {},
        "conversations": {},
        "cases": [],
        "snippets": [],
    }
    for conversation in conversations:
        goldens["conversations"][conversation["name"]] = conversation_context(conversation)
    for name, special_tokens in TEMPLATES.items():
        source = (DATA / f"{name}.jinja").read_text(encoding="utf-8")
        goldens["templates"][name] = {"file": f"{name}.jinja", "special_tokens": special_tokens}
        for conversation in conversations:
            context = {**conversation_context(conversation), **special_tokens}
            case = {"template": name, "conversation": conversation["name"]}
            case.update(render(source, context))
            goldens["cases"].append(case)
    snippet_names = set()
    for name, source, context in SNIPPETS:
        if name in snippet_names:
            sys.exit(f"duplicate snippet {name}")
        snippet_names.add(name)
        # Round-trip through JSON so that jinja2 sees exactly the values the C++ test loads.
        context = json.loads(json.dumps(context))
        entry = {"name": name, "template": source, "context": context}
        entry.update(render(source, context))
        goldens["snippets"].append(entry)

    out = DATA / "goldens.json"
    # json.dumps keeps the insertion order of every dict, which the C++ side reads back in order.
    out.write_text(json.dumps(goldens, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum("error" in c for c in goldens["cases"])
    snippet_errors = sum("error" in s for s in goldens["snippets"])
    print(f"wrote {out.relative_to(ROOT)}: {len(goldens['cases'])} cases ({errors} raise), "
          f"{len(goldens['snippets'])} snippets ({snippet_errors} raise)")


if __name__ == "__main__":
    main()
