//! Where the services live, checked as an admin types them: DataDog's documented sites
//! (`src/datadog_sites.json`, shared with the cdk settings) and Genesys Cloud region domains.
//!
//! What a browser shows is the usual mistake: `app.datadoghq.eu` for the site `datadoghq.eu`,
//! `apps.mypurecloud.ie` for the region `mypurecloud.ie`. A value that is not a site is refused
//! with the site meant: the one the address names once its scheme, path, port, trailing dot and
//! `app.`/`api.` are taken off (or whose browser address it is), else the nearest by edit
//! distance, with the list of valid ones.

use serde::Deserialize;

/// DataDog's documented sites, with the address a browser shows for each.
pub const DATADOG_SITES_JSON: &str = include_str!("datadog_sites.json");

/// One DataDog site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DataDogSite {
    /// The site parameter (`datadoghq.eu`): the API is `https://api.<site>`.
    pub site: String,
    /// DataDog's name for it (`EU1`).
    pub name: String,
    /// The address a browser shows (`app.datadoghq.eu`).
    pub browser: String,
}

#[derive(Deserialize)]
struct SitesFile {
    sites: Vec<DataDogSite>,
}

/// Why a `DD_SITE` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteError {
    #[error("{given:?} is not a DataDog site parameter: use {site} (its site{})", why_site(.via_browser))]
    Meant {
        given: String,
        site: String,
        via_browser: bool,
    },
    #[error("{given:?} is not a DataDog site: the nearest is {nearest}; the sites are {}", .sites.join(", "))]
    Unknown {
        given: String,
        nearest: String,
        sites: Vec<String>,
    },
    #[error("the built-in list of DataDog sites cannot be read: {0}")]
    List(String),
}

fn why_site(via_browser: &bool) -> &'static str {
    if *via_browser {
        ", whose pages a browser shows there"
    } else {
        " parameter: no scheme, path, port, app. or api."
    }
}

/// DataDog's documented sites.
pub fn datadog_sites() -> Result<Vec<DataDogSite>, SiteError> {
    serde_json::from_str::<SitesFile>(DATADOG_SITES_JSON)
        .map(|file| file.sites)
        .map_err(|error| SiteError::List(error.to_string()))
}

/// The host an address names: without scheme, path, query, port and trailing dot, lowercased.
fn host_of(text: &str) -> String {
    let text = text.trim();
    let text = text.split_once("://").map_or(text, |(_, rest)| rest);
    let text = text.split(['/', '?', '#']).next().unwrap_or_default();
    let text = match text.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => text,
    };
    text.trim_end_matches('.').to_lowercase()
}

/// Checks a `DD_SITE` value against DataDog's documented sites.
pub fn check_datadog_site(given: &str) -> Result<DataDogSite, SiteError> {
    let sites = datadog_sites()?;
    if let Some(site) = sites.iter().find(|site| site.site == given) {
        return Ok(site.clone());
    }
    let host = host_of(given);
    let bare = ["app.", "api."]
        .iter()
        .find_map(|prefix| host.strip_prefix(prefix))
        .unwrap_or(&host);
    let meant = |site: &DataDogSite, via_browser| SiteError::Meant {
        given: given.to_owned(),
        site: site.site.clone(),
        via_browser,
    };
    if let Some(site) = sites
        .iter()
        .find(|site| site.browser == host && site.site != host)
    {
        return Err(meant(site, true));
    }
    if let Some(site) = sites.iter().find(|site| site.site == bare || site.site == host) {
        return Err(meant(site, false));
    }
    let nearest = sites
        .iter()
        .min_by_key(|site| edit_distance(bare, &site.site))
        .map(|site| site.site.clone())
        .unwrap_or_default();
    Err(SiteError::Unknown {
        given: given.to_owned(),
        nearest,
        sites: sites.into_iter().map(|site| site.site).collect(),
    })
}

/// Why a `GENESYS_REGION` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error(
        "{given:?} is an address, not the org's region domain: use {region} (login.<region> and \
         api.<region> are derived from it)"
    )]
    Address { given: String, region: String },
    #[error("{given:?} is not a Genesys Cloud region domain such as mypurecloud.com or euw2.pure.cloud")]
    NotADomain { given: String },
}

/// Checks a `GENESYS_REGION` value: a region domain (`mypurecloud.ie`), not an address of one
/// (`https://apps.mypurecloud.ie`, `login.mypurecloud.ie`).
pub fn check_genesys_region(given: &str) -> Result<(), RegionError> {
    let has_scheme = given.contains("://");
    let host = host_of(given);
    let prefixed = ["apps.", "login.", "api."]
        .iter()
        .find_map(|prefix| host.strip_prefix(prefix));
    if has_scheme || prefixed.is_some() || given.contains('/') {
        let region = prefixed.unwrap_or(&host).to_owned();
        if is_domain(&region) {
            return Err(RegionError::Address {
                given: given.to_owned(),
                region,
            });
        }
    }
    if is_domain(given) {
        Ok(())
    } else {
        Err(RegionError::NotADomain {
            given: given.to_owned(),
        })
    }
}

/// Whether `text` reads as a DNS domain (lowercase, with a dot).
pub fn is_domain(text: &str) -> bool {
    text.contains('.')
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

/// Levenshtein distance, over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meant(given: &str) -> String {
        match check_datadog_site(given) {
            Err(SiteError::Meant { site, .. }) => site,
            other => panic!("{given}: {other:?}"),
        }
    }

    #[test]
    fn every_documented_site_is_taken() {
        let sites = datadog_sites().expect("the list");
        assert_eq!(sites.len(), 8);
        for site in &sites {
            assert_eq!(check_datadog_site(&site.site).as_ref(), Ok(site));
        }
    }

    #[test]
    fn an_address_names_the_site_it_belongs_to() {
        assert_eq!(meant("app.datadoghq.eu"), "datadoghq.eu");
        assert_eq!(meant("https://app.datadoghq.com/dashboard"), "datadoghq.com");
        assert_eq!(meant("api.us5.datadoghq.com"), "us5.datadoghq.com");
        assert_eq!(meant("https://us3.datadoghq.com:443/"), "us3.datadoghq.com");
        assert_eq!(meant("datadoghq.eu."), "datadoghq.eu");
        assert_eq!(meant("app.ddog-gov.com"), "ddog-gov.com");
        assert_eq!(meant("Datadoghq.COM"), "datadoghq.com");
    }

    #[test]
    fn anything_else_is_refused_with_the_nearest_site_and_the_list() {
        let error = check_datadog_site("datadoghq.de").expect_err("refused");
        assert!(
            matches!(&error, SiteError::Unknown { nearest, .. } if nearest == "datadoghq.eu"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.starts_with("\"datadoghq.de\" is not a DataDog site: the nearest is datadoghq.eu; the sites are datadoghq.com, us3.datadoghq.com"), "{message}");
        assert!(message.ends_with("us2.ddog-gov.com"), "{message}");
        assert!(matches!(
            check_datadog_site("us4.datadoghq.com"),
            Err(SiteError::Unknown { .. })
        ));
        assert_eq!(
            check_datadog_site("app.datadoghq.eu")
                .expect_err("refused")
                .to_string(),
            "\"app.datadoghq.eu\" is not a DataDog site parameter: use datadoghq.eu (its site, \
             whose pages a browser shows there)"
        );
    }

    #[test]
    fn a_genesys_address_names_the_region_domain() {
        assert_eq!(check_genesys_region("mypurecloud.ie"), Ok(()));
        assert_eq!(check_genesys_region("euw2.pure.cloud"), Ok(()));
        for (given, region) in [
            ("apps.mypurecloud.ie", "mypurecloud.ie"),
            ("https://apps.mypurecloud.ie/directory/", "mypurecloud.ie"),
            ("login.mypurecloud.de", "mypurecloud.de"),
            ("api.euw2.pure.cloud", "euw2.pure.cloud"),
            ("https://mypurecloud.com", "mypurecloud.com"),
        ] {
            let error = check_genesys_region(given).expect_err(given);
            assert_eq!(
                error,
                RegionError::Address {
                    given: given.to_owned(),
                    region: region.to_owned()
                }
            );
            assert!(error.to_string().contains(&format!("use {region}")), "{error}");
        }
        assert!(matches!(
            check_genesys_region("Ireland"),
            Err(RegionError::NotADomain { .. })
        ));
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("datadoghq.de", "datadoghq.eu"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
