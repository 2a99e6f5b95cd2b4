//! Bearer tokens: hashed at rest, a role each; the bootstrap admin token.

use chrono::Utc;
use entity::api_token::{self, Role};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Actor, Services};
use crate::config::SecretString;
use crate::error::{Error, Result};

/// sha256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Services {
    /// Makes sure an admin token exists. With `given`, that token is (re)registered; without,
    /// a new one is generated if no admin token exists yet and returned so it can be printed once.
    pub async fn bootstrap_admin(&self, given: Option<&SecretString>) -> Result<Option<String>> {
        let (token, generated) = match given {
            Some(t) if t.expose().len() >= 16 => (t.expose().to_owned(), false),
            Some(_) => return Err(Error::invalid("SNAPGRES_ADMIN_TOKEN", "must be at least 16 characters")),
            None => {
                let any_admin = api_token::Entity::find()
                    .filter(api_token::Column::Role.eq(Role::Admin))
                    .filter(api_token::Column::RevokedAt.is_null())
                    .one(&self.db)
                    .await?;
                if any_admin.is_some() {
                    return Ok(None);
                }
                (format!("sgp_{}", crate::secrets::random_token(32)), true)
            }
        };
        let hash = hash_token(&token);
        if api_token::Entity::find().filter(api_token::Column::TokenHash.eq(hash.clone())).one(&self.db).await?.is_none() {
            api_token::ActiveModel {
                id: Set(Uuid::new_v4()),
                name: Set("bootstrap-admin".to_owned()),
                role: Set(Role::Admin),
                token_hash: Set(hash),
                created_at: Set(Utc::now()),
                revoked_at: Set(None),
            }
            .insert(&self.db)
            .await?;
        }
        Ok(generated.then_some(token))
    }

    /// The actor behind an `Authorization` header value (`Bearer <token>`).
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Actor> {
        let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer "))).map(str::trim).filter(|t| !t.is_empty()).ok_or(Error::Unauthenticated)?;
        let row = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash_token(token)))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or(Error::Unauthenticated)?;
        Ok(Actor { token_id: row.id, name: row.name, role: row.role })
    }
}
