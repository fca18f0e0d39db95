//! The `#[trace]` attribute macro of MLflow Tracing for Rust.
//!
//! Use it through the facade, `#[mlflow_tracing::trace]`: the expansion refers to
//! `::mlflow_tracing`. See the facade's documentation for the options.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, LitStr, Pat, ReturnType, Token, Type};

/// Traces a function: each call is an MLflow span (see the `mlflow-tracing` facade).
///
/// Options: `name = "..."`, `span_type = "LLM"` (or any expression convertible into `SpanType`),
/// `attributes(key = value, "dotted.key" = value)`, `skip(arg, ...)`, `skip_all`, `skip_output`
/// (record no outputs: for return values that are not `Serialize`). Arguments bound by a
/// pattern (`(a, b): (u8, u8)`) have no name and are not recorded.
#[proc_macro_attribute]
pub fn trace(args: TokenStream, item: TokenStream) -> TokenStream {
    let options = match syn::parse::<Options>(args) {
        Ok(o) => o,
        Err(e) => return e.to_compile_error().into(),
    };
    let function = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => {
            return syn::Error::new(
                e.span(),
                "#[trace] applies to a `fn` or `async fn` with a body",
            )
            .to_compile_error()
            .into();
        }
    };
    match expand(options, function) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct AttributeKv {
    key: String,
    value: Expr,
}

impl Parse for AttributeKv {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = if input.peek(LitStr) {
            input.parse::<LitStr>()?.value()
        } else {
            unraw(&input.parse::<Ident>()?)
        };
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(AttributeKv { key, value })
    }
}

#[derive(Default)]
struct Options {
    name: Option<LitStr>,
    span_type: Option<Expr>,
    attributes: Vec<AttributeKv>,
    skip: Vec<Ident>,
    skip_all: bool,
    skip_output: bool,
    output_reducer: Option<Expr>,
    log_level: Option<Expr>,
    description: Option<Expr>,
    sampling_ratio_override: Option<Expr>,
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut options = Options::default();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            match key.to_string().as_str() {
                "name" => {
                    input.parse::<Token![=]>()?;
                    options.name = Some(input.parse()?);
                }
                "span_type" => {
                    input.parse::<Token![=]>()?;
                    options.span_type = Some(input.parse()?);
                }
                "attributes" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let kvs = Punctuated::<AttributeKv, Token![,]>::parse_terminated(&content)?;
                    options.attributes.extend(kvs);
                }
                "skip" => {
                    let content;
                    syn::parenthesized!(content in input);
                    let names = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                    options.skip.extend(names);
                }
                "output_reducer" => {
                    input.parse::<Token![=]>()?;
                    options.output_reducer = Some(input.parse()?);
                }
                "log_level" => {
                    input.parse::<Token![=]>()?;
                    options.log_level = Some(input.parse()?);
                }
                "description" => {
                    input.parse::<Token![=]>()?;
                    options.description = Some(input.parse()?);
                }
                "sampling_ratio_override" => {
                    input.parse::<Token![=]>()?;
                    options.sampling_ratio_override = Some(input.parse()?);
                }
                "skip_all" => options.skip_all = true,
                "skip_output" => options.skip_output = true,
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown #[trace] option `{other}`; expected one of: name, \
                             span_type, attributes, skip, skip_all, skip_output, output_reducer, \
                             log_level, description, sampling_ratio_override"
                        ),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(options)
    }
}

fn unraw(ident: &Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#")
        .map_or_else(|| s.clone(), str::to_owned)
}

/// Whether a type cannot annotate a `let`: it mentions `impl Trait`, or is `!`.
fn has_impl_trait(ty: &Type) -> bool {
    if matches!(ty, Type::Never(_)) {
        return true;
    }
    ty.to_token_stream()
        .into_iter()
        .any(|t| matches!(&t, proc_macro2::TokenTree::Ident(i) if i == "impl"))
        || matches!(ty, Type::ImplTrait(_))
}

/// What a function returning `impl Stream` / `impl Iterator` is traced as.
enum Streamed {
    Stream,
    TryStream,
    Iter,
    TryIter,
}

/// `impl Stream<Item = ..>` or `impl Iterator<Item = ..>` (an `Item` of `Result<..>` makes it a
/// try-stream).
fn streamed(ty: &Type) -> Option<Streamed> {
    let Type::ImplTrait(imp) = ty else {
        return None;
    };
    imp.bounds.iter().find_map(|b| {
        let syn::TypeParamBound::Trait(t) = b else {
            return None;
        };
        let last = t.path.segments.last()?;
        let of_results = match &last.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().any(|a| {
                matches!(a, syn::GenericArgument::AssocType(at)
                    if at.ident == "Item"
                        && matches!(&at.ty, Type::Path(p)
                            if p.path.segments.last().is_some_and(|s| s.ident == "Result")))
            }),
            _ => false,
        };
        match (last.ident.to_string().as_str(), of_results) {
            ("Stream", false) => Some(Streamed::Stream),
            ("Stream", true) => Some(Streamed::TryStream),
            ("Iterator", false) => Some(Streamed::Iter),
            ("Iterator", true) => Some(Streamed::TryIter),
            _ => None,
        }
    })
}

/// The `#[trace]` options that configure the span's start: `.log_level(..)`, `.description(..)`,
/// `.sampling_ratio(..)`, checked at compile time when given as literals.
fn start_options(options: &Options) -> syn::Result<TokenStream2> {
    let mut out = TokenStream2::new();
    // MLflow's order: the span's attributes right after its type, then description and level.
    for kv in &options.attributes {
        let key = &kv.key;
        let value = &kv.value;
        out.extend(quote!(.attribute(#key, &(#value))));
    }
    if let Some(level) = &options.log_level {
        let level = match level {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => {
                let variant = match s.value().trim().to_ascii_uppercase().as_str() {
                    "DEBUG" => quote!(Debug),
                    "INFO" => quote!(Info),
                    "WARNING" => quote!(Warning),
                    "ERROR" => quote!(Error),
                    "CRITICAL" => quote!(Critical),
                    other => {
                        return Err(syn::Error::new(
                            s.span(),
                            format!(
                                "unknown log level `{other}`; expected DEBUG, INFO, WARNING, \
                                 ERROR or CRITICAL"
                            ),
                        ));
                    }
                };
                quote!(::mlflow_tracing::entities::SpanLogLevel::#variant)
            }
            e => quote!(#e),
        };
        out.extend(quote!(.log_level(#level)));
    }
    if let Some(d) = &options.description {
        out.extend(quote!(.description(#d)));
    }
    if let Some(r) = &options.sampling_ratio_override {
        // A literal (`0.5`, `1`, `-0.5`) is checked now; an expression at run time.
        let literal = match r {
            Expr::Lit(syn::ExprLit { lit, .. }) => Some((lit, 1.0)),
            Expr::Unary(syn::ExprUnary {
                op: syn::UnOp::Neg(_),
                expr,
                ..
            }) => match &**expr {
                Expr::Lit(syn::ExprLit { lit, .. }) => Some((lit, -1.0)),
                _ => None,
            },
            _ => None,
        };
        if let Some((lit, sign)) = literal {
            let value = match lit {
                syn::Lit::Float(f) => f.base10_parse::<f64>().ok(),
                syn::Lit::Int(i) => i.base10_parse::<f64>().ok(),
                _ => None,
            };
            if !value.is_some_and(|v| (0.0..=1.0).contains(&(v * sign))) {
                return Err(syn::Error::new(
                    r.span(),
                    "sampling_ratio_override must be a number between 0.0 and 1.0",
                ));
            }
        }
        out.extend(quote!(.sampling_ratio(f64::from(#r))));
    }
    Ok(out)
}

fn expand(options: Options, function: ItemFn) -> syn::Result<TokenStream2> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let fn_name = unraw(&sig.ident);
    let span_name = options
        .name
        .as_ref()
        .map_or_else(|| fn_name.clone(), LitStr::value);
    let span_type = match &options.span_type {
        None => quote!(::core::option::Option::None),
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        })) => quote!(::core::option::Option::Some(::mlflow_tracing::SpanType::from(#s))),
        Some(e) => {
            quote!(::core::option::Option::Some(::core::convert::Into::<::mlflow_tracing::SpanType>::into(#e)))
        }
    };

    // The arguments recorded as inputs.
    let mut recorded: Vec<Ident> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for arg in &sig.inputs {
        let FnArg::Typed(pat) = arg else { continue }; // `self` is never an input (as in MLflow)
        let mut p = &*pat.pat;
        while let Pat::Reference(r) = p {
            p = &r.pat;
        }
        if let Pat::Ident(pi) = p {
            known.push(unraw(&pi.ident));
            if !options.skip_all && !options.skip.iter().any(|s| unraw(s) == unraw(&pi.ident)) {
                recorded.push(pi.ident.clone());
            }
        }
    }
    for s in &options.skip {
        if !known.contains(&unraw(s)) {
            return Err(syn::Error::new(
                s.span(),
                format!("`skip({s})`: `{fn_name}` has no argument named `{s}`"),
            ));
        }
    }
    let input_stmts = recorded.iter().map(|ident| {
        let name = unraw(ident);
        quote_spanned! {ident.span()=>
            {
                #[allow(unused_imports)]
                use ::mlflow_tracing::__private::{ArgFallback as _, ArgSerialize as _};
                __mlflow_inputs.arg(
                    &__mlflow_span,
                    #name,
                    (&::mlflow_tracing::__private::Probe(&#ident)).__mlflow_arg(),
                );
            }
        }
    });

    let ret_ty: Option<&Type> = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    };
    let annotatable = ret_ty.filter(|t| !has_impl_trait(t));
    let output_span = ret_ty.map_or_else(Span::call_site, |t| t.span());

    let run = if sig.asyncness.is_some() {
        let fake_return = annotatable.map(|ty| {
            quote! {
                #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::needless_return)]
                if false {
                    let __mlflow_fake_return: #ty = loop {};
                    return __mlflow_fake_return;
                }
            }
        });
        quote! {
            ::mlflow_tracing::__private::TracedFuture::new(
                async move { #fake_return #block },
                &__mlflow_span,
            )
            .await
        }
    } else {
        quote! {
            ::mlflow_tracing::__private::run_in_span(&__mlflow_span, || #block)
        }
    };
    let value_annotation = match (&sig.output, annotatable) {
        (ReturnType::Default, _) => quote!(: ()),
        (_, Some(ty)) => quote!(: #ty),
        (_, None) => quote!(),
    };
    let record = if options.skip_output {
        quote!()
    } else {
        quote_spanned! {output_span=>
        {
            #[allow(unused_imports)]
            use ::mlflow_tracing::__private::{RecordOther as _, RecordResult as _, RecordSerialize as _};
            (&&::mlflow_tracing::__private::Probe(&__mlflow_value)).__mlflow_record(&__mlflow_span);
        }
        }
    };

    let start_options = start_options(&options)?;
    // `skip_output` opts out: the function is traced as any other (its span ends when it
    // returns the stream), for items that are not `Serialize`.
    let streamed_as = if sig.asyncness.is_none() && !options.skip_output {
        ret_ty.and_then(streamed)
    } else {
        None
    };
    if options.output_reducer.is_some() && streamed_as.is_none() {
        return Err(syn::Error::new(
            sig.ident.span(),
            "`output_reducer` applies to functions returning `impl Stream<Item = ..>` or \
             `impl Iterator<Item = ..>` (not async)",
        ));
    }
    if let Some(kind) = streamed_as {
        let wrapper = match kind {
            Streamed::Stream => quote!(::mlflow_tracing::__private::TracedStream),
            Streamed::TryStream => quote!(::mlflow_tracing::__private::TracedTryStream),
            Streamed::Iter => quote!(::mlflow_tracing::__private::TracedIter),
            Streamed::TryIter => quote!(::mlflow_tracing::__private::TracedTryIter),
        };
        let reducer = options
            .output_reducer
            .as_ref()
            .map(|r| quote!(.output_reducer(#r)));
        return Ok(quote! {
            #(#attrs)*
            #vis #sig {
                let __mlflow_span = ::mlflow_tracing::__private::fn_span(#span_name, ::core::option::Option::None, #span_type)
                    #start_options
                    .start_detached();
                if __mlflow_span.is_recording() {
                    let mut __mlflow_inputs = ::mlflow_tracing::__private::Inputs::new();
                    #(#input_stmts)*
                    __mlflow_inputs.finish(&__mlflow_span);
                }
                // The stream is made in the span; the stream ends it.
                let __mlflow_value = #run;
                #wrapper::new(__mlflow_value, __mlflow_span) #reducer
            }
        });
    }

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __mlflow_span = ::mlflow_tracing::__private::fn_span(#span_name, ::core::option::Option::Some(#fn_name), #span_type)
                #start_options
                .start_detached();
            if __mlflow_span.is_recording() {
                let mut __mlflow_inputs = ::mlflow_tracing::__private::Inputs::new();
                #(#input_stmts)*
                __mlflow_inputs.finish(&__mlflow_span);
            }
            let __mlflow_value #value_annotation = #run;
            #record
            __mlflow_span.end();
            __mlflow_value
        }
    })
}
