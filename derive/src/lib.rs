//! `#[derive(Pod)]` for [shmlink](https://docs.rs/shmlink): plain old data without
//! `unsafe`, re-exported as `shmlink::region::Pod`.
//!
//! The derive checks, at compile time, what the hand-written `unsafe impl Pod`
//! promises: the type is a struct with `#[repr(C)]` (or `#[repr(transparent)]`), no
//! generic parameters, every field `Pod`, and no padding (its size is the sum of its
//! fields'). It also derives the type's fingerprint from its name, a layout version
//! (`#[pod(version = N)]`, default 1), its size and alignment, and each field's name
//! and fingerprint, so that two programs agree on it exactly when they agree on the
//! layout. See `shmlink::region::Pod` for examples.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitInt, parse_macro_input};

/// Derives `shmlink::region::Pod` for a `#[repr(C)]` struct whose fields are all `Pod`
/// and which has no padding; refused at compile time otherwise.
#[proc_macro_derive(Pod, attributes(pod))]
pub fn derive_pod(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let name = &input.ident;
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "derive(Pod) takes no generic parameters: write `unsafe impl Pod` by hand",
        ));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            name.span(),
            "derive(Pod) is for structs (an enum has invalid bit patterns, a union \
             unknown ones)",
        ));
    };
    if !has_c_repr(input)? {
        return Err(syn::Error::new(
            name.span(),
            "derive(Pod) needs #[repr(C)] (or #[repr(transparent)]): Rust's own layout \
             may differ between builds",
        ));
    }
    let version = version(input)?;
    let fields: Vec<(String, &syn::Type)> = match &data.fields {
        Fields::Named(f) => f
            .named
            .iter()
            .map(|f| {
                (
                    f.ident
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    &f.ty,
                )
            })
            .collect(),
        Fields::Unnamed(f) => f
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| (i.to_string(), &f.ty))
            .collect(),
        Fields::Unit => Vec::new(),
    };
    let pod = quote!(::shmlink::region::Pod);
    let each_pod = fields.iter().map(|(_, ty)| {
        quote_spanned! {ty.span()=> assert_pod::<#ty>(); }
    });
    let sizes = fields
        .iter()
        .map(|(_, ty)| quote!(::core::mem::size_of::<#ty>()));
    let type_name = name.to_string();
    let fold = fields.iter().map(|(field, ty)| {
        quote! {
            fp = ::shmlink::region::combine_fingerprints(
                ::shmlink::region::combine_fingerprints(
                    fp,
                    ::shmlink::region::layout_fingerprint(#field, 0, 0, 0),
                ),
                <#ty as #pod>::FINGERPRINT,
            );
        }
    });
    let padding = format!(
        "derive(Pod): `{type_name}` has padding (its size is more than the sum of its \
         fields'): add explicit fields for it"
    );
    let align = format!(
        "derive(Pod): `{type_name}` is aligned above 128 bytes, more than a ring slot \
         guarantees"
    );
    Ok(quote! {
        const _: () = {
            #[allow(dead_code)]
            fn assert_pod<T: #pod>() {}
            #[allow(dead_code)]
            fn every_field_is_pod() {
                #(#each_pod)*
            }
            assert!(
                ::core::mem::size_of::<#name>() == 0 #(+ #sizes)*,
                #padding
            );
            assert!(
                ::core::mem::align_of::<#name>() <= 128,
                #align
            );
        };
        // SAFETY: checked above at compile time: repr(C), no generics, every field Pod
        // (so every bit pattern of each is valid and none holds a pointer), no padding
        // (the size is the sum of the fields'), so every bit pattern of the whole is
        // valid, and an alignment of at most 128 (asserted, since `repr(align)` could
        // raise it).
        unsafe impl #pod for #name {
            const FINGERPRINT: u64 = {
                let mut fp = ::shmlink::region::layout_fingerprint(
                    #type_name,
                    #version,
                    ::core::mem::size_of::<#name>(),
                    ::core::mem::align_of::<#name>(),
                );
                #(#fold)*
                fp
            };
        }
    })
}

/// Whether the type has `#[repr(C)]` or `#[repr(transparent)]`.
fn has_c_repr(input: &DeriveInput) -> syn::Result<bool> {
    let mut found = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                found = true;
            }
            // Other hints (align(N), packed) are allowed alongside: the padding and
            // field checks still hold.
            if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let _: Tokens = content.parse()?; // align(N), packed(N): taken as they are
            }
            Ok(())
        })?;
    }
    Ok(found)
}

/// The layout version from `#[pod(version = N)]`, 1 if absent.
fn version(input: &DeriveInput) -> syn::Result<u32> {
    let mut version = 1;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("pod")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("version") {
                version = meta.value()?.parse::<LitInt>()?.base10_parse()?;
                Ok(())
            } else {
                Err(meta.error("expected `version = N`"))
            }
        })?;
    }
    Ok(version)
}
